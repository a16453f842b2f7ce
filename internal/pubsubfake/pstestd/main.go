// Command pstestd runs pstest, the Pub/Sub client library's fake server,
// in a process of its own, with one topic and one subscription, and a
// small JSON control API for what a test asks of the fake besides Pub/Sub's
// own API: publish, and what became of each message.
//
// It exists because pstest has a data race of its own: tryDeliverMessage
// rewrites a message's AckId and DeliveryAttempt for a redelivery while the
// sendLoop of an earlier delivery's stream may still be marshalling it. In
// a test binary built with -race that runs pstest in-process, that fails
// the test run, though the race is not ours. Built without -race and run
// apart, as the Firestore emulator is, pstest cannot trip the tests' race
// detector. Package pubsubfake builds and starts it; tests use that.
//
// Usage:
//
//	pstestd -topic projects/P/topics/T -subscription projects/P/subscriptions/S [-settings JSON]
//
// Once both servers listen on 127.0.0.1, it prints one line on stdout and
// nothing else there:
//
//	{"grpc":"127.0.0.1:PORT","http":"127.0.0.1:PORT"}
//
// grpc is the address for PUBSUB_EMULATOR_HOST; http serves the control
// API. It exits when its stdin closes (the process that started it is
// done with it, or died) or on SIGTERM or SIGINT, so it never outlives the
// test.
//
// The control API answers JSON:
//
//	POST /publish        {"data": base64, "attributes": {...}} → {"id": "..."}
//	GET  /messages       every message ever published, oldest first
//	GET  /messages/{id}  one message, or 404
//
// A message is pstest.Message as encoding/json writes it: ID, Data,
// Attributes, PublishTime, Deliveries, Acks, Modacks (AckID, AckDeadline,
// ReceivedAt), OrderingKey, Topic.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/protobuf/encoding/protojson"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pstestd:", err)
		os.Exit(1)
	}
}

func run() error {
	// From the start: a SIGTERM right after the ready line (a test that
	// ends at once) is a stop asked for, not a death by signal.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	topic := flag.String("topic", "", "the topic to create, projects/P/topics/T (required)")
	subName := flag.String("subscription", "", "the subscription of -topic to create, projects/P/subscriptions/S (required)")
	settings := flag.String("settings", `{"ackDeadlineSeconds": 10}`,
		"the subscription's settings, a google.pubsub.v1.Subscription in protojson (ackDeadlineSeconds, deadLetterPolicy, ...); "+
			"its name and topic are -subscription and -topic. pstest refuses an ack deadline under 10 s")
	flag.Parse()
	if *topic == "" || *subName == "" {
		return errors.New("-topic and -subscription are required")
	}
	sub := &pubsubpb.Subscription{}
	if err := protojson.Unmarshal([]byte(*settings), sub); err != nil {
		return fmt.Errorf("-settings: %w", err)
	}
	sub.Name, sub.Topic = *subName, *topic

	srv := pstest.NewServerWithAddress("127.0.0.1:0")
	defer srv.Close()
	ctx := context.Background()
	// pstest refuses a dead-letter policy whose topic does not exist.
	topics := []string{*topic}
	if dl := sub.GetDeadLetterPolicy().GetDeadLetterTopic(); dl != "" && dl != *topic {
		topics = append(topics, dl)
	}
	for _, name := range topics {
		if _, err := srv.GServer.CreateTopic(ctx, &pubsubpb.Topic{Name: name}); err != nil {
			return fmt.Errorf("create topic %s: %w", name, err)
		}
	}
	if _, err := srv.GServer.CreateSubscription(ctx, sub); err != nil {
		return fmt.Errorf("create subscription %s: %w", sub.Name, err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("control API: %w", err)
	}
	hs := &http.Server{Handler: newControl(srv, *topic)}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()

	ready, err := json.Marshal(struct {
		GRPC string `json:"grpc"`
		HTTP string `json:"http"`
	}{srv.Addr, ln.Addr().String()})
	if err != nil {
		return err
	}
	if _, err := os.Stdout.Write(append(ready, '\n')); err != nil {
		return fmt.Errorf("ready line: %w", err)
	}

	// Nobody waits for this reader when a signal ends the process: it is
	// blocked in a read of stdin, and exiting is what ends it.
	stdinClosed := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stdinClosed)
	}()
	select {
	case <-stdinClosed:
	case <-sig:
	case err := <-served:
		return fmt.Errorf("control API: %w", err)
	}
	hs.Close()
	<-served
	return nil
}

// control serves the control API.
type control struct {
	srv   *pstest.Server
	topic string
	// mu serialises reads of messages: pstest's Messages and Message
	// refresh the exported counters of its own *Message values, unlocked
	// once they return, so two requests encoding at once would race.
	mu sync.Mutex
}

func newControl(srv *pstest.Server, topic string) http.Handler {
	c := &control{srv: srv, topic: topic}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /publish", c.publish)
	mux.HandleFunc("GET /messages", c.messages)
	mux.HandleFunc("GET /messages/{id}", c.message)
	return mux
}

func (c *control) publish(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Data       []byte            `json:"data"`
		Attributes map[string]string `json:"attributes"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "publish: "+err.Error(), http.StatusBadRequest)
		return
	}
	id := c.srv.Publish(c.topic, req.Data, req.Attributes)
	writeJSON(w, struct {
		ID string `json:"id"`
	}{id})
}

func (c *control) messages(w http.ResponseWriter, _ *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	msgs := c.srv.Messages()
	if msgs == nil {
		msgs = []*pstest.Message{} // [], not null: none published yet
	}
	writeJSON(w, msgs)
}

func (c *control) message(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.srv.Message(r.PathValue("id"))
	if m == nil {
		http.Error(w, "no message "+r.PathValue("id")+" was published", http.StatusNotFound)
		return
	}
	writeJSON(w, m)
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}
