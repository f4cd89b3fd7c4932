// Package meshsim is the egress-guard oracle: Istio's own config generator
// (pilot/test/xds) and traffic simulation (pilot/pkg/simulation) serving JSON
// requests over stdin/stdout, so Python tests can ask "where does this call end?"
// and "does Istio's validation accept this object?" without a cluster.
//
// It is a test binary because simulation.NewSimulation wants a *testing.T.
// The protocol is documented in README.md next to this file.
package meshsim

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"
	"time"
)

// responses is the only writer of protocol lines. Everything else that writes to
// stdout (the testing framework's "=== RUN", Istio's logs) is sent to stderr so it
// cannot corrupt the protocol.
var responses io.Writer = os.Stdout

func TestMain(m *testing.M) {
	if os.Getenv("MESHSIM_SERVE") == "1" {
		fd, err := syscall.Dup(1)
		if err != nil {
			fmt.Fprintln(os.Stderr, "meshsim: dup stdout:", err)
			os.Exit(2)
		}
		responses = os.NewFile(uintptr(fd), "responses")
		if err := syscall.Dup3(2, 1, 0); err != nil {
			fmt.Fprintln(os.Stderr, "meshsim: redirect stdout:", err)
			os.Exit(2)
		}
	}
	os.Exit(m.Run())
}

// TestServe answers one JSON request per input line with one JSON response line,
// until stdin closes. Only active with MESHSIM_SERVE=1 so `go test` alone stays a
// plain test run.
func TestServe(t *testing.T) {
	if os.Getenv("MESHSIM_SERVE") != "1" {
		t.Skip("set MESHSIM_SERVE=1 to serve requests on stdin")
	}
	in := bufio.NewReader(os.Stdin)
	enc := json.NewEncoder(responses)
	for n := 0; ; n++ {
		line, err := in.ReadBytes('\n')
		if len(line) > 0 && !isBlank(line) {
			resp := handle(t, n, line)
			if err := enc.Encode(resp); err != nil {
				t.Fatalf("writing response: %v", err)
			}
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("reading request: %v", err)
		}
	}
}

func isBlank(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\n' && c != '\r' && c != '\t' {
			return false
		}
	}
	return true
}

// handle runs one request in its own subtest: Istio's fakes call t.Fatal on bad
// input, which ends only that subtest's goroutine, and t.Cleanup frees the fake
// server when the request is answered.
func handle(t *testing.T, n int, line []byte) (resp Response) {
	start := time.Now()
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		return Response{Error: "bad request: " + err.Error()}
	}
	resp = Response{ID: req.ID, Op: req.Op}
	done := false
	t.Run(fmt.Sprintf("request-%d", n), func(t *testing.T) {
		switch req.Op {
		case "simulate":
			resp = simulate(t, req)
		case "validate":
			resp = validate(req)
		default:
			resp.Error = fmt.Sprintf("unknown op %q (want simulate or validate)", req.Op)
		}
		resp.ID, resp.Op = req.ID, req.Op
		done = true
	})
	if !done && resp.Error == "" {
		resp.Error = "istio rejected the input (see stderr for the fake server's message)"
	}
	resp.ElapsedMs = time.Since(start).Milliseconds()
	return resp
}
