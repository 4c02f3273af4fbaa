package tools

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/sessionplane/sessionplane/runtime/config"
)

// A call without arguments skips the decoder, the limits walk and (after
// the first) the schema validation, with the same outcome for every tool
// as the full path: the same validation error (or none, twice in a row)
// and the same decoded input.
func TestNoArgumentsFastPath(t *testing.T) {
	r := NewRegistry(&Env{})
	for _, tl := range Standard(nil) {
		r.Add(tl)
	}
	if len(r.All()) < 10 {
		t.Fatalf("only %d tools", len(r.All()))
	}
	required := 0
	for _, tl := range r.All() {
		c := jsonschema.NewCompiler()
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(string(tl.InputSchema)))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.AddResource("s", doc); err != nil {
			t.Fatal(err)
		}
		sch, err := c.Compile("s")
		if err != nil {
			t.Fatal(err)
		}
		want := validateRaw(sch, json.RawMessage("{}"))
		for i, raw := range []string{"{}", "{}", "", "null"} {
			got := r.validate(tl, json.RawMessage(raw))
			if (got == nil) != (want == nil) || (got != nil && got.Error() != want.Error()) {
				t.Errorf("%s: validate %q (#%d) = %v, want %v", tl.Name, raw, i, got, want)
			}
		}
		if want != nil {
			required++
		}
		if msg := checkLimits(config.DefaultLimits(), tl.Name, json.RawMessage("{}")); msg != "" {
			t.Errorf("%s: limits refuse {}: %s", tl.Name, msg)
		}
		fast, err := tl.decode(json.RawMessage("{}"))
		if err != nil {
			t.Fatalf("%s: decode {}: %v", tl.Name, err)
		}
		// The full path: a strict decoder over {} into a new input value.
		full, err := tl.decode(json.RawMessage("{ }"))
		if err != nil {
			t.Fatalf("%s: decode { }: %v", tl.Name, err)
		}
		if !reflect.DeepEqual(fast, full) {
			t.Errorf("%s: decode {} = %#v, want %#v", tl.Name, fast, full)
		}
	}
	if required == 0 {
		t.Fatal("no tool requires an argument: the refusal of {} is not exercised")
	}
}
