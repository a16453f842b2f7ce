package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
)

// -pubsub-topic publishes every post, one message per -b, with the
// article_id -article-id asks for, and says so in the summary.
func TestPublish(t *testing.T) {
	srv := pstest.NewServerWithAddress("127.0.0.1:0")
	defer srv.Close()
	const topic = "projects/p/topics/posts"
	if _, err := srv.GServer.CreateTopic(t.Context(), &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	csvFile := filepath.Join(dir, "posts.csv")
	if err := os.WriteFile(csvFile, []byte("id,publication,content\n1,A,Elena Marsh\n2,B,Daniel Okafor\n,C,Port Ashby\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		cmd := exec.Command(loadBin, args...)
		cmd.Env = append(os.Environ(), "PUBSUB_EMULATOR_HOST="+srv.Addr)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	tests := []struct {
		name     string
		args     []string
		messages int
		ids      []string // article_ids seen, sorted by message data
	}{
		{"one post a message", []string{articles}, 60, nil},
		{"ndjson batches", []string{"-b", "25", articles}, 3, nil},
		{"article_id from a column", []string{"-article-id", "field:id", csvFile}, 3, []string{"1", "2", ""}},
		{"article_id as a hash", []string{"-article-id", "hash", csvFile}, 3, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv.ClearMessages()
			out, err := run(append([]string{"-pubsub-topic", topic, "-json", "-quiet"}, tc.args...)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			var res struct {
				Read, Accepted, Requests int64
				NoArticleID              int64 `json:"no_article_id"`
				Topic                    string
			}
			if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &res); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			msgs := srv.Messages()
			if len(msgs) != tc.messages || res.Requests != int64(tc.messages) || res.Accepted != res.Read || res.Topic != topic {
				t.Fatalf("%d messages on the server; summary %+v; want %d messages, every post published", len(msgs), res, tc.messages)
			}
			posts := 0
			for _, m := range msgs {
				posts += strings.Count(strings.TrimSpace(string(m.Data)), "\n") + 1
				if _, nd := m.Attributes["ndjson"]; nd != (len(tc.args) > 1 && tc.args[0] == "-b") {
					t.Errorf("message %s: attributes %v", m.ID, m.Attributes)
				}
				id := m.Attributes["article_id"]
				switch {
				case tc.ids != nil:
					want := tc.ids[strings.Index("ABC", string(m.Data[16]))] // {"publication":"X"
					if id != want {
						t.Errorf("message %s (%s): article_id %q, want %q", m.ID, m.Data, id, want)
					}
				case strings.Contains(tc.name, "hash") && len(id) != 32:
					t.Errorf("message %s: article_id %q, want a hash", m.ID, id)
				}
			}
			if int64(posts) != res.Read {
				t.Fatalf("%d posts in the messages, %d read", posts, res.Read)
			}
			if tc.ids != nil && res.NoArticleID != 1 {
				t.Fatalf("summary %+v: want the one row without an id counted", res)
			}
		})
	}
	// A topic that does not exist is refused at once, exit 2.
	out, err := run("-pubsub-topic", "projects/p/topics/nope", articles)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(out, "no such topic") {
		t.Fatalf("a missing topic: %v\n%s", err, out)
	}
}
