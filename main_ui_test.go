package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sessionplane/sessionplane/internal/testdb"
)

func TestUICommandRefusesBadFlags(t *testing.T) {
	t.Setenv("SESSIONPLANE_CONFIG", "")
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	db := testdb.DSN(t, "ui.db")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"ui", "--help"}, 0, "read-only, live web dashboard"},
		{[]string{"ui", "--db", db, "--addr", "0.0.0.0:8766"}, 2, "loopback only"},
		{[]string{"ui", "--db", db, "--addr", "nonsense"}, 2, "use host:port"},
		{[]string{"ui", "--db", db, "--addr", "127.0.0.1:0", "--preset", "nosuch"}, 2, `--preset "nosuch": no such preset`},
		{[]string{"ui", "--db", db, "extra"}, 2, `unexpected argument "extra"`},
	} {
		var stderr strings.Builder
		code := run(context.Background(), c.args, strings.NewReader(""), io.Discard, &stderr)
		if code != c.code || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", c.args, code, stderr.String(), c.code, c.want)
		}
	}
	t.Setenv("SESSIONPLANE_UI_TOKEN", "short")
	var stderr strings.Builder
	if code := run(context.Background(), []string{"ui", "--db", db, "--addr", "127.0.0.1:0"}, strings.NewReader(""), io.Discard, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "too short") {
		t.Errorf("a 5-character token: exit %d, %q", code, stderr.String())
	}
}

// The command prints the address with a generated token once, serves the
// dashboard, and stops (exit 0) when its context ends, even with an event
// stream open.
func TestUICommandServesAndStops(t *testing.T) {
	t.Setenv("SESSIONPLANE_CONFIG", "")
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("SESSIONPLANE_UI_TOKEN", "")
	t.Setenv("SESSIONPLANE_HTTP_TOKEN", "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, []string{"ui", "--db", testdb.DSN(t, "ui.db"), "--addr", "127.0.0.1:0"}, strings.NewReader(""), io.Discard, pw)
		pw.Close()
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		re := regexp.MustCompile(`^sessionplane ui: open (http://127\.0\.0\.1:\d+/\?token=[0-9a-f]{64})$`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	var url string
	select {
	case url = <-addr:
	case <-time.After(30 * time.Second):
		t.Fatal("no address with a token printed within 30s")
	}
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Timeout: 10 * time.Second, Jar: jar}
	res, err := client.Get(url) // follows the redirect with the cookie it set
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), "app.js") || strings.Contains(res.Request.URL.String(), "token=") {
		t.Fatalf("opening the printed address: %d at %s", res.StatusCode, res.Request.URL)
	}
	base := strings.SplitN(url, "?", 2)[0]
	token := strings.SplitN(url, "token=", 2)[1]
	req, _ := http.NewRequest("GET", base+"events?view=tree", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	stream, err := (&http.Client{}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	line, err := bufio.NewReader(stream.Body).ReadString('\n')
	if err != nil || line != "event: view\n" {
		t.Fatalf("event stream: %q %v", line, err)
	}
	cancel()
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("exit %d after the context ended, want 0", code)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("sessionplane ui did not stop within 15s with an event stream open")
	}
}
