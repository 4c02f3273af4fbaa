package mcp

import (
	"encoding/json"
	"testing"
)

// The fast paths of responseID and idKey give what decoding the whole
// message gives, for every id shape a client may use.
func TestResponseIDFastPathMatchesDecoding(t *testing.T) {
	slowKey := func(id json.RawMessage) string {
		var v any
		if json.Unmarshal(id, &v) != nil {
			return string(id)
		}
		b, _ := json.Marshal(v)
		return string(b)
	}
	ids := []string{`1`, `0`, `42`, `123456789012345`, `1234567890123456789`, `007`, `-3`, `1.0`, `1e2`,
		`"a"`, `""`, `"req-7:x"`, `"a<b"`, `"a&b"`, `"\u00e9"`, `"é"`, `"a\"b"`, `"tab\tx"`}
	for _, id := range ids {
		for _, tail := range []string{`"result":{"content":[{"type":"text","text":"hi"}]}`, `"error":{"code":-32600,"message":"no"}`, `"method":"sampling/createMessage","params":{}`} {
			msg := []byte(`{"jsonrpc":"2.0","id":` + id + `,` + tail + `}`)
			var m struct {
				ID     json.RawMessage `json:"id"`
				Method string          `json:"method"`
				Result json.RawMessage `json:"result"`
				Error  json.RawMessage `json:"error"`
			}
			if json.Unmarshal(msg, &m) != nil {
				continue // not valid JSON (e.g. 007): only the slow path sees it, as before
			}
			wantResp := m.Method == "" && len(m.ID) > 0 && (m.Result != nil || m.Error != nil)
			gotID, gotOK, gotResp := responseID(msg)
			if gotResp != wantResp || (wantResp && (gotOK != (m.Result != nil) || idKey(gotID) != slowKey(m.ID))) {
				t.Errorf("%s: got (%s, %v, %v) key %q, want response=%v ok=%v key %q", msg, gotID, gotOK, gotResp, idKey(gotID), wantResp, m.Result != nil, slowKey(m.ID))
			}
		}
		if got, want := idKey(json.RawMessage(id)), slowKey(json.RawMessage(id)); got != want {
			t.Errorf("idKey(%s) = %q, want %q", id, got, want)
		}
	}
}
