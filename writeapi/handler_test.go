package writeapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/wire"
)

// testLogger routes the handler's logs to t.Log at debug level.
func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:   "writeapi",
		Level:  hclog.Debug,
		Output: tWriter{t},
	})
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

type request struct {
	method, path, body string
	header             map[string]string
}

func serve(h http.Handler, req request) *httptest.ResponseRecorder {
	if req.method == "" {
		req.method = http.MethodPost
	}
	if req.path == "" {
		req.path = "/post/enqueue"
	}
	r := httptest.NewRequest(req.method, req.path, strings.NewReader(req.body))
	if req.method == http.MethodPost {
		// Without a token a post needs a JSON Content-Type; a test that
		// means to send none says so with "Content-Type": "".
		r.Header.Set("Content-Type", "application/json")
	}
	for k, v := range req.header {
		r.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

// jsonBody checks the response is JSON and decodes it.
func jsonBody(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("response body %q is not a JSON object: %v", rec.Body.String(), err)
	}
	return m
}

// errorMessage checks the response is a JSON error and returns its message.
func errorMessage(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	msg, ok := jsonBody(t, rec)["error"].(string)
	if !ok || msg == "" {
		t.Fatalf("response body %q has no \"error\" string", rec.Body.String())
	}
	return msg
}

func assertContains(t *testing.T, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("message %q does not contain %q", got, w)
		}
	}
}

const goodPost = `{"publication": "Daily", "content": "Rain again."}`

func TestEnqueueOnePost(t *testing.T) {
	q := newMemIntake(4)
	h := New(Config{Intake: q, Logger: testLogger(t)})

	rec := serve(h, request{
		body:   `{"title": "ignored", "publication": "Daily", "content": "Rain \"again\".", "extra": [1, {"x": null}]}`,
		header: map[string]string{"Content-Type": "application/json; charset=utf-8"},
	})
	if rec.Code != http.StatusCreated {
		t.Fatalf("status = %d, want 201; body %s", rec.Code, rec.Body)
	}
	if got := jsonBody(t, rec)["accepted"]; got != 1.0 {
		t.Errorf("accepted = %v, want 1", got)
	}
	want := []wire.Post{{Publication: "Daily", Content: `Rain "again".`}}
	if got := takeAll(q); !equalPosts(got, want) {
		t.Errorf("queue held %+v, want %+v", got, want)
	}
	if s := h.Stats(); s.Accepted != 1 || s.Rejected() != 0 {
		t.Errorf("Stats = %+v, want 1 accepted, none rejected", s)
	}
}

func equalPosts(a, b []wire.Post) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestEnqueueRejectsBadPost(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string
	}{
		{"empty body", "", []string{"request body is empty", `send {"publication"`}},
		{"whitespace body", " \n\t ", []string{"request body is empty"}},
		{"malformed", `{"publication": "Daily", "content": `, []string{"malformed JSON", "unexpected end"}},
		{"malformed character", `{"publication": 'Daily'}`, []string{"malformed JSON at byte", "invalid character"}},
		{"array", `[` + goodPost + `]`, []string{"JSON array, not an object"}},
		{"string", `"Rain"`, []string{"JSON string, not an object"}},
		{"number", `42`, []string{"JSON number, not an object"}},
		{"null", `null`, []string{"JSON null, not an object"}},
		{"boolean", `true`, []string{"JSON boolean, not an object"}},
		{"missing content", `{"publication": "Daily"}`, []string{`"content" is missing`, `send {"publication": "...", "content": "..."}`}},
		{"missing publication", `{"content": "Rain"}`, []string{`"publication" is missing`}},
		{"missing both", `{"title": "x"}`, []string{`"publication" is missing`, `"content" is missing`}},
		{"empty content", `{"publication": "Daily", "content": ""}`, []string{`"content" is empty`, "non-empty"}},
		{"empty publication", `{"publication": "", "content": "Rain"}`, []string{`"publication" is empty`}},
		{"null content", `{"publication": "Daily", "content": null}`, []string{`"content" is null`}},
		{"content number", `{"publication": "Daily", "content": 7}`, []string{`"content" must be a string, got a JSON number`}},
		{"publication object", `{"publication": {"name": "Daily"}, "content": "Rain"}`, []string{`"publication" must be a string, got a JSON object`}},
		{"content array", `{"publication": "Daily", "content": ["Rain"]}`, []string{`"content" must be a string, got a JSON array`}},
		{"trailing object", goodPost + goodPost, []string{"trailing data after the JSON object", "application/x-ndjson"}},
		{"trailing garbage", goodPost + ` x`, []string{"trailing data after the JSON object"}},
		{"trailing brace", goodPost + `}`, []string{"trailing data after the JSON object"}},
		{"ndjson without its Content-Type", goodPost + "\n" + goodPost + "\n", []string{"trailing data", "Content-Type: application/x-ndjson"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newMemIntake(4)
			_ = q.TryPutAll([]wire.Post{{Publication: "p", Content: "already there"}})
			h := New(Config{Intake: q, Logger: testLogger(t)})

			rec := serve(h, request{body: tt.body})
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("status = %d, want 400; body %s", rec.Code, rec.Body)
			}
			assertContains(t, errorMessage(t, rec), tt.want...)
			if n := q.Len(); n != 1 {
				t.Errorf("queue length = %d after a refused request, want 1 (unchanged)", n)
			}
			if s := h.Stats(); s.BadRequest != 1 || s.Accepted != 0 || s.Rejected() != 1 {
				t.Errorf("Stats = %+v, want exactly one bad request", s)
			}
		})
	}
}

func TestEnqueueNDJSON(t *testing.T) {
	for _, ct := range []string{
		"application/x-ndjson",
		"application/x-ndjson; charset=utf-8",
		"Application/X-NDJSON",
		"application/ndjson",
	} {
		t.Run(ct, func(t *testing.T) {
			q := newMemIntake(8)
			h := New(Config{Intake: q, Logger: testLogger(t)})
			body := "\n" +
				`{"publication": "A", "content": "one"}` + "\r\n" +
				"   \n" +
				`{"publication": "B", "content": "two", "title": "t"}` + "\n" +
				`  {"content": "three", "publication": "C"}  `
			rec := serve(h, request{body: body, header: map[string]string{"Content-Type": ct}})
			if rec.Code != http.StatusCreated {
				t.Fatalf("status = %d, want 201; body %s", rec.Code, rec.Body)
			}
			if got := jsonBody(t, rec)["accepted"]; got != 3.0 {
				t.Errorf("accepted = %v, want 3", got)
			}
			want := []wire.Post{{Publication: "A", Content: "one"}, {Publication: "B", Content: "two"}, {Publication: "C", Content: "three"}}
			if got := takeAll(q); !equalPosts(got, want) {
				t.Errorf("queue held %+v, want %+v in order", got, want)
			}
			if s := h.Stats(); s.Accepted != 3 {
				t.Errorf("Stats.Accepted = %d, want 3", s.Accepted)
			}
		})
	}
}

func TestEnqueueNDJSONRejectsWholeBatch(t *testing.T) {
	line := func(pub, content string) string {
		return fmt.Sprintf(`{"publication": %q, "content": %q}`, pub, content)
	}
	tests := []struct {
		name string
		body string
		want []string
	}{
		{
			"bad line 3 of 5",
			strings.Join([]string{line("A", "1"), line("B", "2"), `{"content": "3"}`, line("D", "4"), line("E", "5")}, "\n"),
			[]string{`line 3: "publication" is missing`},
		},
		{
			"blank lines count",
			line("A", "1") + "\n\n\n" + `{"publication": "D", "content": 4}` + "\n",
			[]string{`line 4: "content" must be a string, got a JSON number`},
		},
		{
			"last line bad",
			line("A", "1") + "\n" + line("B", "2") + "\n" + `{"publication": "C", "content": ""`,
			[]string{"line 3: malformed JSON", "one complete object per line"},
		},
		{
			"pretty-printed object",
			"{\n  \"publication\": \"A\",\n  \"content\": \"1\"\n}\n",
			[]string{"line 1: malformed JSON", "one complete object per line"},
		},
		{
			"two objects on a line",
			line("A", "1") + line("B", "2") + "\n",
			[]string{"line 1: trailing data", "its own line"},
		},
		{"array line", line("A", "1") + "\n[1]\n", []string{"line 2: post is a JSON array, not an object"}},
		{"empty body", "", []string{"no posts"}},
		{"only blank lines", "\n \r\n\t\n", []string{"no posts"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newMemIntake(8)
			h := New(Config{Intake: q, Logger: testLogger(t)})
			rec := serve(h, request{body: tt.body, header: map[string]string{"Content-Type": "application/x-ndjson"}})
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("status = %d, want 400; body %s", rec.Code, rec.Body)
			}
			assertContains(t, errorMessage(t, rec), tt.want...)
			if n := q.Len(); n != 0 {
				t.Errorf("queue length = %d, want 0: a bad batch must enqueue nothing", n)
			}
			if s := h.Stats(); s.BadRequest != 1 || s.Accepted != 0 {
				t.Errorf("Stats = %+v, want one bad request, none accepted", s)
			}
		})
	}
}

func TestEnqueueRejectsMalformedContentType(t *testing.T) {
	q := newMemIntake(2)
	h := New(Config{Intake: q, Logger: testLogger(t)})
	rec := serve(h, request{body: goodPost, header: map[string]string{"Content-Type": "application/x-ndjson; charset"}})
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("status = %d, want 400; body %s", rec.Code, rec.Body)
	}
	assertContains(t, errorMessage(t, rec), "Content-Type", "application/x-ndjson")
	if q.Len() != 0 {
		t.Errorf("queue length = %d, want 0", q.Len())
	}
}

// readSpy fails to be read: it tells whether the handler touched the body.
type readSpy struct{ read bool }

func (r *readSpy) Read([]byte) (int, error) {
	r.read = true
	return 0, errors.New("readSpy: body must not be read")
}

func TestEnqueueAuth(t *testing.T) {
	const token = "s3cret-token"
	tests := []struct {
		name   string
		token  string
		header map[string]string
		want   int
	}{
		{"no token configured", "", nil, http.StatusCreated},
		{"no token configured, one sent", "", map[string]string{"access_token": "anything"}, http.StatusCreated},
		{"access_token", token, map[string]string{"access_token": token}, http.StatusCreated},
		{"bearer", token, map[string]string{"Authorization": "Bearer " + token}, http.StatusCreated},
		{"bearer lower case", token, map[string]string{"Authorization": "bearer " + token}, http.StatusCreated},
		{"wrong access_token, right bearer", token, map[string]string{"access_token": "nope", "Authorization": "Bearer " + token}, http.StatusCreated},
		{"missing", token, nil, http.StatusUnauthorized},
		{"wrong access_token", token, map[string]string{"access_token": "s3cret-tokeN"}, http.StatusUnauthorized},
		{"prefix of token", token, map[string]string{"access_token": "s3cret"}, http.StatusUnauthorized},
		{"wrong bearer", token, map[string]string{"Authorization": "Bearer nope"}, http.StatusUnauthorized},
		{"basic scheme", token, map[string]string{"Authorization": "Basic " + token}, http.StatusUnauthorized},
		{"bare token in Authorization", token, map[string]string{"Authorization": token}, http.StatusUnauthorized},
		{"empty bearer", token, map[string]string{"Authorization": "Bearer "}, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newMemIntake(2)
			h := New(Config{Intake: q, Token: tt.token, Logger: testLogger(t)})
			rec := serve(h, request{body: goodPost, header: tt.header})
			if rec.Code != tt.want {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tt.want, rec.Body)
			}
			if tt.want == http.StatusCreated {
				if q.Len() != 1 {
					t.Errorf("queue length = %d, want 1", q.Len())
				}
				return
			}
			assertContains(t, errorMessage(t, rec), "missing or wrong token", "access_token", "Authorization: Bearer")
			if q.Len() != 0 {
				t.Errorf("queue length = %d, want 0", q.Len())
			}
			if s := h.Stats(); s.Unauthorized != 1 {
				t.Errorf("Stats.Unauthorized = %d, want 1", s.Unauthorized)
			}
		})
	}

	t.Run("checked before the body is read", func(t *testing.T) {
		h := New(Config{Intake: newMemIntake(2), Token: token, MaxBody: 10, Logger: testLogger(t)})
		spy := &readSpy{}
		r := httptest.NewRequest(http.MethodPost, "/post/enqueue", spy)
		r.ContentLength = 5
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("status = %d, want 401; body %s", rec.Code, rec.Body)
		}
		if spy.read {
			t.Error("the body was read before the token was checked")
		}
	})

	t.Run("over a real connection", func(t *testing.T) {
		// net/http canonicalises header names; access_token must survive
		// that on the way in.
		q := newMemIntake(2)
		srv := httptest.NewServer(New(Config{Intake: q, Token: token, Logger: testLogger(t)}))
		defer srv.Close()
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/post/enqueue", strings.NewReader(goodPost))
		if err != nil {
			t.Fatal(err)
		}
		req.Header["access_token"] = []string{token} // as sent by a client that does not canonicalise
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated || q.Len() != 1 {
			t.Errorf("status = %d, queue length %d; want 201 and 1", resp.StatusCode, q.Len())
		}
	})
}

func TestEnqueueBodyTooLarge(t *testing.T) {
	const maxBody = 100
	post := func(n int) string { // a valid post of exactly n bytes
		s := `{"publication": "P", "content": ""}`
		return s[:len(s)-2] + strings.Repeat("x", n-len(s)) + `"}`
	}
	tests := []struct {
		name    string
		body    string
		chunked bool // no Content-Length: the limit must hold while reading
		ndjson  bool
		want    int
	}{
		{"at the limit", post(maxBody), false, false, http.StatusCreated},
		{"over the limit", post(maxBody + 1), false, false, http.StatusRequestEntityTooLarge},
		{"over the limit, chunked", post(maxBody + 1), true, false, http.StatusRequestEntityTooLarge},
		{"at the limit, chunked", post(maxBody), true, false, http.StatusCreated},
		{"far over, chunked ndjson", strings.Repeat(goodPost+"\n", 100), true, true, http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newMemIntake(1000)
			h := New(Config{Intake: q, MaxBody: maxBody, Logger: testLogger(t)})
			r := httptest.NewRequest(http.MethodPost, "/post/enqueue", strings.NewReader(tt.body))
			if tt.chunked {
				r.ContentLength = -1
			}
			r.Header.Set("Content-Type", "application/json")
			if tt.ndjson {
				r.Header.Set("Content-Type", "application/x-ndjson")
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if rec.Code != tt.want {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tt.want, rec.Body)
			}
			if tt.want == http.StatusCreated {
				return
			}
			assertContains(t, errorMessage(t, rec), "request body larger than 100 bytes (--max-body)")
			if q.Len() != 0 {
				t.Errorf("queue length = %d, want 0", q.Len())
			}
			if s := h.Stats(); s.TooLarge != 1 {
				t.Errorf("Stats.TooLarge = %d, want 1", s.TooLarge)
			}
		})
	}
}

func TestEnqueueDefaultMaxBody(t *testing.T) {
	q := newMemIntake(1)
	h := New(Config{Intake: q, Logger: testLogger(t)})
	body := `{"publication": "P", "content": "` + strings.Repeat("x", DefaultMaxBody) + `"}`
	rec := serve(h, request{body: body})
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status = %d, want 413", rec.Code)
	}
	assertContains(t, errorMessage(t, rec), "request body larger than 1048576 bytes (--max-body)")
}

func TestEnqueueQueueFull(t *testing.T) {
	q := newMemIntake(2)
	h := New(Config{Intake: q, Logger: testLogger(t)})
	for i := range 2 {
		if rec := serve(h, request{body: goodPost}); rec.Code != http.StatusCreated {
			t.Fatalf("post %d: status = %d, want 201; body %s", i, rec.Code, rec.Body)
		}
	}

	for _, req := range []request{
		{body: goodPost},
		{body: goodPost + "\n" + goodPost, header: map[string]string{"Content-Type": "application/x-ndjson"}},
	} {
		rec := serve(h, req)
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("status = %d, want 503; body %s", rec.Code, rec.Body)
		}
		if got := rec.Header().Get("Retry-After"); got != strconv.Itoa(int(memRetryAfter/time.Second)) {
			t.Errorf("Retry-After = %q, want the refusal's %s", got, memRetryAfter)
		}
		// The refusal's message, and when to come back.
		assertContains(t, errorMessage(t, rec), "the test intake is full (2 posts)", "retry later, after 2 s (Retry-After)")
		if q.Len() != 2 {
			t.Errorf("queue length = %d, want 2", q.Len())
		}
	}

	// A batch that does not fit now but would fit an empty queue is also
	// refused whole, and accepted once there is room.
	q.take()
	batch := request{body: goodPost + "\n" + goodPost, header: map[string]string{"Content-Type": "application/x-ndjson"}}
	if rec := serve(h, batch); rec.Code != http.StatusServiceUnavailable || q.Len() != 1 {
		t.Fatalf("status = %d, queue length %d; want 503 and 1", rec.Code, q.Len())
	}
	q.take()
	if rec := serve(h, batch); rec.Code != http.StatusCreated || q.Len() != 2 {
		t.Fatalf("status = %d, queue length %d; want 201 and 2", rec.Code, q.Len())
	}
	if s := h.Stats(); s.QueueFull != 3 || s.Accepted != 4 {
		t.Errorf("Stats = %+v, want 3 queue_full and 4 accepted", s)
	}
}

func TestEnqueueBatchLargerThanQueue(t *testing.T) {
	q := newMemIntake(2)
	h := New(Config{Intake: q, Logger: testLogger(t)})
	body := strings.Repeat(goodPost+"\n", 3)
	rec := serve(h, request{body: body, header: map[string]string{"Content-Type": "application/x-ndjson"}})
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status = %d, want 413; body %s", rec.Code, rec.Body)
	}
	assertContains(t, errorMessage(t, rec), "batch of 3 posts is more than the test intake's 2")
	if got := rec.Header().Get("Retry-After"); got != "" {
		t.Errorf("Retry-After = %q on a 413: the request will never fit", got)
	}
	if q.Len() != 0 {
		t.Errorf("queue length = %d, want 0", q.Len())
	}
	if s := h.Stats(); s.TooLarge != 1 {
		t.Errorf("Stats.TooLarge = %d, want 1", s.TooLarge)
	}
}

// brokenIntake breaks the Intake contract: its error is not a *Refusal.
type brokenIntake struct{}

func (brokenIntake) TryPutAll([]wire.Post) error { return errors.New("disk on fire") }

// An error outside the contract is a bug of the intake: the client gets a
// 503 that tells it to come back, without the error's text, and the log
// says what happened.
func TestEnqueueErrorOutsideTheContract(t *testing.T) {
	var logs bytes.Buffer
	h := New(Config{Intake: brokenIntake{}, Logger: hclog.New(&hclog.LoggerOptions{Output: &logs})})
	rec := serve(h, request{body: goodPost})
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "5" {
		t.Fatalf("status = %d, Retry-After %q; want 503 and 5", rec.Code, rec.Header().Get("Retry-After"))
	}
	if msg := errorMessage(t, rec); strings.Contains(msg, "fire") {
		t.Errorf("the client was told the intake's error: %q", msg)
	}
	if s := h.Stats(); s.Unavailable != 1 {
		t.Errorf("Stats.Unavailable = %d, want 1", s.Unavailable)
	}
	if !strings.Contains(logs.String(), "disk on fire") {
		t.Errorf("the error was not logged: %q", logs.String())
	}
}

func TestDraining(t *testing.T) {
	assertDraining := func(t *testing.T, rec *httptest.ResponseRecorder) {
		t.Helper()
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("status = %d, want 503; body %s", rec.Code, rec.Body)
		}
		if retry, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || retry < 1 {
			t.Errorf("Retry-After = %q, want whole seconds >= 1", rec.Header().Get("Retry-After"))
		}
		msg := errorMessage(t, rec)
		if !strings.HasPrefix(msg, "draining: ") {
			t.Errorf("message %q does not start with \"draining: \"", msg)
		}
		assertContains(t, msg, "shutting down")
	}

	t.Run("SetDraining", func(t *testing.T) {
		q := newMemIntake(4)
		h := New(Config{Intake: q, Logger: testLogger(t)})
		if rec := serve(h, request{method: http.MethodGet, path: "/readyz"}); rec.Code != http.StatusOK {
			t.Fatalf("/readyz before draining: status = %d, want 200", rec.Code)
		}
		h.SetDraining()
		h.SetDraining() // idempotent
		assertDraining(t, serve(h, request{body: goodPost}))
		assertDraining(t, serve(h, request{body: goodPost, header: map[string]string{"Content-Type": "application/x-ndjson"}}))
		if q.Len() != 0 {
			t.Errorf("queue length = %d, want 0", q.Len())
		}
		rec := serve(h, request{method: http.MethodGet, path: "/readyz"})
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("/readyz while draining: status = %d, want 503", rec.Code)
		}
		if body := jsonBody(t, rec); body["status"] != "not ready" || !strings.Contains(fmt.Sprint(body["reason"]), "draining") {
			t.Errorf("/readyz body = %v, want not ready because draining", body)
		}
		if rec := serve(h, request{method: http.MethodGet, path: "/healthz"}); rec.Code != http.StatusOK {
			t.Errorf("/healthz while draining: status = %d, want 200: the process is alive", rec.Code)
		}
		if s := h.Stats(); s.Draining != 2 {
			t.Errorf("Stats.Draining = %d, want 2", s.Draining)
		}
	})

	t.Run("queue closed", func(t *testing.T) {
		q := newMemIntake(4)
		q.Close()
		h := New(Config{Intake: q, Logger: testLogger(t)})
		assertDraining(t, serve(h, request{body: goodPost}))
		if s := h.Stats(); s.Draining != 1 {
			t.Errorf("Stats.Draining = %d, want 1", s.Draining)
		}
	})

	t.Run("draining wins over bad input", func(t *testing.T) {
		h := New(Config{Intake: newMemIntake(4), Logger: testLogger(t)})
		h.SetDraining()
		assertDraining(t, serve(h, request{body: "not json"}))
	})
}

func TestProbes(t *testing.T) {
	var notReady error
	h := New(Config{Intake: newMemIntake(1), Logger: testLogger(t), Ready: func() error { return notReady }})

	rec := serve(h, request{method: http.MethodGet, path: "/healthz"})
	if rec.Code != http.StatusOK || jsonBody(t, rec)["status"] != "ok" {
		t.Errorf("/healthz: status %d body %s, want 200 {\"status\":\"ok\"}", rec.Code, rec.Body)
	}
	if rec := serve(h, request{method: http.MethodHead, path: "/healthz"}); rec.Code != http.StatusOK {
		t.Errorf("HEAD /healthz: status %d, want 200", rec.Code)
	}
	if rec := serve(h, request{method: http.MethodGet, path: "/readyz"}); rec.Code != http.StatusOK {
		t.Errorf("/readyz: status %d, want 200", rec.Code)
	}

	notReady = errors.New("no worker has said hello yet")
	rec = serve(h, request{method: http.MethodGet, path: "/readyz"})
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz when not ready: status %d, want 503", rec.Code)
	}
	body := jsonBody(t, rec)
	if body["status"] != "not ready" || body["reason"] != "no worker has said hello yet" {
		t.Errorf("/readyz body = %v, want status \"not ready\" and Ready's error as reason", body)
	}
}

func TestRouting(t *testing.T) {
	tests := []struct {
		name      string
		req       request
		want      int
		wantAllow string
		wantMsg   []string
	}{
		{"unknown path", request{method: http.MethodGet, path: "/nope"}, http.StatusNotFound, "", []string{"/nope", "/post/enqueue"}},
		{"trailing slash", request{path: "/post/enqueue/", body: goodPost}, http.StatusNotFound, "", []string{"/post/enqueue/"}},
		{"GET enqueue", request{method: http.MethodGet}, http.StatusMethodNotAllowed, "POST", []string{"GET", "use POST"}},
		{"PUT enqueue", request{method: http.MethodPut, body: goodPost}, http.StatusMethodNotAllowed, "POST", []string{"PUT"}},
		{"POST healthz", request{path: "/healthz"}, http.StatusMethodNotAllowed, "GET, HEAD", []string{"use GET"}},
		{"DELETE readyz", request{method: http.MethodDelete, path: "/readyz"}, http.StatusMethodNotAllowed, "GET, HEAD", []string{"use GET"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newMemIntake(2)
			h := New(Config{Intake: q, Logger: testLogger(t)})
			rec := serve(h, tt.req)
			if rec.Code != tt.want {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tt.want, rec.Body)
			}
			if got := rec.Header().Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow = %q, want %q", got, tt.wantAllow)
			}
			assertContains(t, errorMessage(t, rec), tt.wantMsg...)
			if q.Len() != 0 {
				t.Errorf("queue length = %d, want 0", q.Len())
			}
		})
	}
}

func TestRefusalsAreLoggedWithoutBody(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	log := hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: lockedWriter{&mu, &logs}})
	h := New(Config{Intake: newMemIntake(2), Logger: log})

	serve(h, request{body: `{"publication": "Daily", "content": "SECRET-BODY"`})
	mu.Lock()
	defer mu.Unlock()
	got := logs.String()
	assertContains(t, got, "request refused", "reason=bad_request", "status=400", "malformed JSON")
	if strings.Contains(got, "SECRET-BODY") {
		t.Errorf("log contains the request body: %s", got)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestNewPanicsOnBadConfig(t *testing.T) {
	for _, cfg := range []Config{{}, {Intake: newMemIntake(1), MaxBody: -1}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%+v) did not panic", cfg)
				}
			}()
			New(cfg)
		}()
	}
	// A nil logger is fine: refusals are simply not logged.
	h := New(Config{Intake: newMemIntake(1)})
	if rec := serve(h, request{body: "{"}); rec.Code != http.StatusBadRequest {
		t.Errorf("status = %d, want 400", rec.Code)
	}
}

// TestConcurrentPosts posts from many goroutines over real connections
// into a queue too small for all of them: every post is either accepted
// and in the queue, or refused as queue full, and the counts agree.
func TestConcurrentPosts(t *testing.T) {
	const (
		clients    = 16
		perClient  = 25
		batchEvery = 5 // every fifth request is an NDJSON batch of 3
		capacity   = 200
	)
	q := newMemIntake(capacity)
	h := New(Config{Intake: q, Token: "t", Logger: hclog.NewNullLogger()})
	srv := httptest.NewServer(h)
	defer srv.Close()

	type result struct{ accepted, full, requests int }
	results := make(chan result, clients)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			var res result
			defer func() { results <- res }()
			for i := range perClient {
				body, ct, n := fmt.Sprintf(`{"publication": "c%d", "content": "post %d"}`, c, i), "application/json", 1
				if i%batchEvery == 0 {
					body = strings.Repeat(body+"\n", 3)
					ct, n = "application/x-ndjson", 3
				}
				req, err := http.NewRequest(http.MethodPost, srv.URL+"/post/enqueue", strings.NewReader(body))
				if err != nil {
					t.Errorf("client %d: %v", c, err)
					return
				}
				req.Header.Set("Content-Type", ct)
				req.Header.Set("Authorization", "Bearer t")
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Errorf("client %d: %v", c, err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				res.requests++
				switch resp.StatusCode {
				case http.StatusCreated:
					res.accepted += n
				case http.StatusServiceUnavailable:
					res.full++
				default:
					t.Errorf("client %d: status %d, want 201 or 503", c, resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	close(results)

	var total result
	for r := range results {
		total.accepted += r.accepted
		total.full += r.full
		total.requests += r.requests
	}
	s := h.Stats()
	if int(s.Accepted) != total.accepted || q.Len() != total.accepted || q.Accepted() != total.accepted {
		t.Errorf("Stats.Accepted = %d, queue length %d, queue accepted %d; clients saw %d accepted",
			s.Accepted, q.Len(), q.Accepted(), total.accepted)
	}
	if int(s.QueueFull) != total.full || s.Rejected() != s.QueueFull {
		t.Errorf("Stats = %+v; clients saw %d refused as full", s, total.full)
	}
	if total.requests != clients*perClient {
		t.Errorf("%d requests completed, want %d", total.requests, clients*perClient)
	}
	if total.full == 0 {
		t.Errorf("no request found the queue full; the test no longer covers that race")
	}
}
