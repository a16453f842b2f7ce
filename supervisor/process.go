package supervisor

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/wire"
)

// process is one running child: its pipes, its frame encoder and the
// goroutines that read its stdout and stderr.
//
// The encoder is used by exactly one goroutine (the child's dispatcher).
// exited is closed once both pipes are drained and cmd.Wait returned.
type process struct {
	role wire.Role
	id   int
	pid  int
	log  hclog.Logger

	cmd    *exec.Cmd
	stdin  io.WriteCloser
	enc    *wire.Encoder
	exited chan struct{}
	err    error // cmd.Wait's result; read only after exited is closed

	rss, cpuMillis atomic.Int64 // from the latest heartbeat

	mu         sync.Mutex
	stopping   bool   // a STOP was sent: exit is expected
	killReason string // why the parent killed it, if it did
}

// handshakeTimeout bounds how long a child may take to load (the NER model)
// and introduce itself.
const handshakeTimeout = 60 * time.Second

// startProcess re-execs exe as a child with args, waits for its Hello and
// then hands every further frame to onFrame from the stdout reader
// goroutine. onFrame's Frame aliases the decoder's buffer: copy what you keep.
func startProcess(exe string, args []string, role wire.Role, id int, log hclog.Logger, onFrame func(*process, wire.Frame) error) (*process, error) {
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), wire.CookieKey+"="+wire.CookieValue)
	// If the parent dies, even by SIGKILL, the kernel kills the child. The
	// signal follows the OS thread that forked; Go never ends idle threads
	// (only those of goroutines that exit while locked, which we never
	// do), and the child also exits on stdin EOF.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s %d (%s): %w", role, id, exe, err)
	}
	p := &process{
		role: role, id: id, pid: cmd.Process.Pid,
		log:    log.Named(fmt.Sprintf("%s.%d", role, id)).With("pid", cmd.Process.Pid),
		cmd:    cmd,
		stdin:  stdin,
		enc:    wire.NewEncoder(stdin, 0),
		exited: make(chan struct{}),
	}
	hello := make(chan error, 1)
	var readers sync.WaitGroup
	readers.Add(2)
	go func() {
		defer readers.Done()
		relogLines(stderr, p.log)
	}()
	go func() {
		defer readers.Done()
		p.readFrames(stdout, hello, onFrame)
	}()
	go func() {
		readers.Wait() // both pipes drained before Wait closes them
		p.err = cmd.Wait()
		close(p.exited)
	}()

	select {
	case err := <-hello:
		if err == nil {
			return p, nil
		}
		p.kill("bad handshake")
		<-p.exited
		return nil, err
	case <-p.exited:
		return nil, fmt.Errorf("%s %d (pid %d) exited during start-up (%v): see its log lines above", role, id, p.pid, p.err)
	case <-time.After(handshakeTimeout):
		p.kill("no handshake")
		<-p.exited
		return nil, fmt.Errorf("%s %d (pid %d) sent no handshake within %s: killed it", role, id, p.pid, handshakeTimeout)
	}
}

// readFrames reads the handshake, reports it on hello, then passes frames to
// onFrame until EOF. A frame error (a crash mid-frame) ends reading: the
// partial frame is discarded and the stream closed so the child cannot
// block on a full pipe.
func (p *process) readFrames(stdout io.ReadCloser, hello chan<- error, onFrame func(*process, wire.Frame) error) {
	defer io.Copy(io.Discard, stdout)
	dec := wire.NewDecoder(stdout, 0)
	f, err := dec.Next()
	if err != nil {
		hello <- fmt.Errorf("%s %d (pid %d): no handshake: %w", p.role, p.id, p.pid, err)
		return
	}
	var h wire.Hello
	if err := f.Decode(&h); err != nil {
		hello <- fmt.Errorf("%s %d (pid %d): bad handshake: %w", p.role, p.id, p.pid, err)
		return
	}
	if err := wire.CheckHello(&h, p.role, p.id); err != nil {
		hello <- err
		return
	}
	hello <- nil
	for {
		f, err := dec.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			p.log.Error("frame stream broken; discarding the rest", "error", err)
			return
		}
		if err := onFrame(p, f); err != nil {
			p.log.Error("bad frame; killing the child", "error", err)
			p.kill("protocol error: " + err.Error())
			return
		}
	}
}

// send writes one frame to the child. Only the child's dispatcher calls it.
func (p *process) send(m wire.Message) error {
	if err := p.enc.Encode(m); err != nil {
		return fmt.Errorf("send %s to %s %d (pid %d): %w", m.Kind(), p.role, p.id, p.pid, err)
	}
	return nil
}

// stop sends STOP, closes stdin and forwards SIGTERM: the child finishes
// what it holds and exits 0.
func (p *process) stop(reason string) {
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	if err := p.send(&wire.Stop{Reason: reason}); err != nil {
		p.log.Warn("could not send STOP", "error", err)
	}
	p.stdin.Close()
	p.cmd.Process.Signal(syscall.SIGTERM)
}

// kill ends the child for sure, recording why. Safe to call more than
// once; the first reason is kept.
func (p *process) kill(reason string) {
	p.mu.Lock()
	if p.killReason == "" {
		p.killReason = reason
	}
	p.mu.Unlock()
	p.cmd.Process.Kill()
}

// stopped reports whether a STOP was sent, and why the parent killed the
// child if it did.
func (p *process) state() (stopping bool, killReason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopping, p.killReason
}

// alive reports whether the process has not exited yet.
func (p *process) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *process) String() string { return fmt.Sprintf("%s %d (pid %d)", p.role, p.id, p.pid) }

// relogLines re-logs each stderr line of a child under log. Lines are
// hclog JSON when they come from the child's logger; anything else is raw
// output, logged as an error from a "panic:" or "fatal error:" line on.
func relogLines(r io.Reader, log hclog.Logger) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	crashed := false
	for sc.Scan() {
		line := sc.Text()
		if msg, level, args, ok := parseJSONLine(line); ok && !crashed {
			log.Log(level, msg, args...)
			continue
		}
		if strings.HasPrefix(line, "panic:") || strings.HasPrefix(line, "fatal error:") {
			crashed = true
		}
		if crashed {
			log.Error(line)
		} else if line != "" {
			log.Info(line)
		}
	}
	// A line over 1 MiB or a read error ends forwarding; drain the rest so
	// the child never blocks on a full stderr pipe.
	io.Copy(io.Discard, r)
}

func parseJSONLine(line string) (msg string, level hclog.Level, args []any, ok bool) {
	if !strings.HasPrefix(line, "{") {
		return "", 0, nil, false
	}
	var m map[string]any
	if json.Unmarshal([]byte(line), &m) != nil {
		return "", 0, nil, false
	}
	msg, _ = m["@message"].(string)
	lv, _ := m["@level"].(string)
	level = hclog.LevelFromString(lv)
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		if !strings.HasPrefix(k, "@") {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		args = append(args, k, m[k])
	}
	return msg, level, args, true
}
