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

// process is one running child: its pipes, its frame encoder, and the
// goroutines that read its stdout and stderr and wait for its exit.
//
// Liveness and routing are kept apart. exited is closed as soon as the
// process has exited, whatever its pipes are doing: "alive" means exactly
// that. drained is closed once its stdout and stderr reached EOF and every
// frame was handed to onFrame, so what it sent before dying is accounted
// for before anyone looks at what it left. The stdout reader never waits
// for anyone: onFrame must not block (see startProcess), so heartbeats are
// read, and recorded, however slowly batches move on.
//
// The encoder is used by one goroutine only, the slot runner.
//
// What it does to the operating system goes through signal and stdin, so
// that the unit tests run the slot runner, the worker's and the saver's
// parts over a process with no OS process behind it (fakeOS).
type process struct {
	role wire.Role
	id   int
	pid  int
	log  hclog.Logger

	signal  func(os.Signal) error // to the OS process: SIGTERM, or os.Kill
	stdin   io.Closer             // the parent's end of the child's stdin, under enc
	enc     *wire.Encoder
	exited  chan struct{}
	drained chan struct{}
	err     error // cmd.Wait's result; read only after exited is closed

	started   time.Time
	lastFrame atomic.Int64 // unix nanoseconds of the latest frame
	rss       atomic.Int64 // bytes, from the latest heartbeat
	cpuMillis atomic.Int64 // from the latest heartbeat

	stopping atomic.Bool // a STOP was sent: an exit is expected

	mu         sync.Mutex
	killReason string // why the parent killed it; "" if it did not
}

// newProcess is a process that has just started: pid, its log, how to
// signal it and the parent's end of its stdin. Whoever waits for it closes
// exited, and drained once its output was read.
func newProcess(role wire.Role, id, pid int, log hclog.Logger, signal func(os.Signal) error, stdin io.WriteCloser) *process {
	p := &process{
		role: role, id: id, pid: pid, log: log,
		signal:  signal,
		stdin:   stdin,
		enc:     wire.NewEncoder(stdin, 0),
		exited:  make(chan struct{}),
		drained: make(chan struct{}),
		started: time.Now(),
	}
	p.lastFrame.Store(p.started.UnixNano())
	return p
}

// handshakeTimeout bounds how long a child may take to load (the NER model)
// and introduce itself.
const handshakeTimeout = 60 * time.Second

// frameHandler is an incarnation's side of its process (see startProcess).
type frameHandler interface {
	// bind gives the incarnation its process, before any frame of it is
	// read: a heartbeat may follow the handshake at once.
	bind(*process)
	// onFrame handles one frame after the handshake, on the stdout
	// reader goroutine.
	onFrame(wire.Frame) error
}

// launch starts a child of role for slot id with the parent's settings,
// for the incarnation h (see startProcess).
func (p *parent) launch(role wire.Role, id int, h frameHandler) (*process, error) {
	if p.aborted() {
		return nil, fmt.Errorf("not starting a %s: the parent is shutting down", role)
	}
	var inherit []*os.File
	if p.lock != nil {
		inherit = append(inherit, p.lock.File())
	}
	return startProcess(p.exe, p.cfg.ChildArgs(role, id), role, id, p.log, h, &p.children.family, inherit...)
}

// family is every child process the parent forked that has not exited
// yet, from the fork on: a child waiting for its handshake (a replacement
// starting, a restart) is in it as much as one that runs. killAll reaches
// them all, and a child forked after killAll is killed as it joins, so no
// child outlives a kill, whatever was starting at that moment. The zero
// value is ready; it is safe for concurrent use.
type family struct {
	mu     sync.Mutex
	procs  map[*process]struct{}
	killed string // killAll's reason once it ran: later arrivals are killed for it
}

// join adds a process just forked. If killAll already ran, the process is
// killed at once.
func (f *family) join(p *process) {
	f.mu.Lock()
	why := f.killed
	if why == "" {
		if f.procs == nil {
			f.procs = make(map[*process]struct{})
		}
		f.procs[p] = struct{}{}
	}
	f.mu.Unlock()
	if why != "" {
		p.kill(why)
	}
}

// leave removes a process that exited.
func (f *family) leave(p *process) {
	f.mu.Lock()
	delete(f.procs, p)
	f.mu.Unlock()
}

// killAll kills every member, and every process that joins from now on,
// for why. Idempotent: the first reason stays.
func (f *family) killAll(why string) {
	f.mu.Lock()
	if f.killed == "" {
		f.killed = why
	}
	list := make([]*process, 0, len(f.procs))
	for p := range f.procs {
		list = append(list, p)
	}
	f.mu.Unlock()
	for _, p := range list {
		p.kill(why)
	}
}

// size is the number of members, processes forked and not yet exited.
func (f *family) size() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.procs)
}

// startProcess re-execs exe as a child with args, binds it to h, waits for
// its Hello and then hands every further frame to h.onFrame, on the stdout
// reader goroutine. onFrame must return promptly and never block on another
// goroutine (record, push to a non-blocking queue, or fail); its Frame
// aliases the decoder's buffer, so it copies what it keeps. An error from
// onFrame is a protocol violation: the child is killed.
//
// The process joins fam as soon as it is forked, before its handshake, and
// leaves it when it exits, so that fam.killAll reaches it while it starts.
//
// inherit are files the child gets as descriptors 3 and up: the data
// directory's lock, which so stays held until the last child exits.
func startProcess(exe string, args []string, role wire.Role, id int, log hclog.Logger, h frameHandler, fam *family, inherit ...*os.File) (*process, error) {
	cmd := exec.Command(exe, args...)
	cmd.ExtraFiles = inherit
	cmd.Env = append(os.Environ(), wire.CookieKey+"="+wire.CookieValue)
	// If the parent dies, even by SIGKILL, the kernel kills the child. The
	// signal follows the OS thread that forked; Go never ends idle threads
	// (only those of goroutines that exit while locked, which we never
	// do), and the child also exits on stdin EOF.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}

	stdin, stdout, stderr, err := attachPipes(cmd)
	if err != nil {
		return nil, fmt.Errorf("start %s %d (%s): %w", role, id, exe, err)
	}
	p := newProcess(role, id, cmd.Process.Pid, log.Named(fmt.Sprintf("%s.%d", role, id)).With("pid", cmd.Process.Pid), cmd.Process.Signal, stdin)
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
		fam.leave(p)
	}()
	fam.join(p)
	h.bind(p)
	hello := make(chan error, 1)
	var readers sync.WaitGroup
	readers.Go(func() {
		defer stderr.Close()
		relogLines(stderr, p.log)
	})
	readers.Go(func() {
		defer stdout.Close()
		p.readFrames(stdout, hello, h.onFrame)
	})
	go func() {
		readers.Wait()
		close(p.drained)
	}()

	t := time.NewTimer(handshakeTimeout)
	defer t.Stop()
	select {
	case err := <-hello:
		if err == nil {
			return p, nil
		}
		p.kill("bad handshake")
		p.wait()
		return nil, err
	case <-p.exited:
		p.wait()
		return nil, fmt.Errorf("%s %d (pid %d) exited during start-up (%v): see its log lines above", role, id, p.pid, p.err)
	case <-t.C:
		p.kill("no handshake")
		p.wait()
		return nil, fmt.Errorf("%s %d (pid %d) sent no handshake within %s: killed it", role, id, p.pid, handshakeTimeout)
	}
}

// attachPipes gives cmd plain pipes for stdin, stdout and stderr, starts
// it, and returns the parent's ends. Plain pipes rather than
// cmd.StdoutPipe: cmd.Wait then closes none of the parent's ends, so it can
// run at once and report the exit while the readers still drain what the
// child wrote.
func attachPipes(cmd *exec.Cmd) (stdin, stdout, stderr *os.File, err error) {
	var pipes [3][2]*os.File // stdin, stdout, stderr: {read, write}
	closeAll := func() {
		for _, pp := range pipes {
			for _, f := range pp {
				if f != nil {
					f.Close()
				}
			}
		}
	}
	for i := range pipes {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll()
			return nil, nil, nil, fmt.Errorf("pipe: %w", err)
		}
		pipes[i] = [2]*os.File{r, w}
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pipes[0][0], pipes[1][1], pipes[2][1]
	if err := cmd.Start(); err != nil {
		closeAll()
		return nil, nil, nil, err
	}
	// The child holds its ends now; the parent keeps only its own.
	pipes[0][0].Close()
	pipes[1][1].Close()
	pipes[2][1].Close()
	return pipes[0][1], pipes[1][0], pipes[2][0], nil
}

// readFrames reads the handshake, reports it on hello, then passes frames to
// onFrame until EOF. A frame error (a crash mid-frame) ends reading: the
// partial frame is discarded, and the rest of the stream too, so that the
// child never blocks on a full pipe.
func (p *process) readFrames(stdout io.Reader, hello chan<- error, onFrame func(wire.Frame) error) {
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
		p.lastFrame.Store(time.Now().UnixNano())
		if err := onFrame(f); err != nil {
			p.kill("protocol error: " + err.Error())
			return
		}
	}
}

// observe records a heartbeat's figures.
func (p *process) observe(hb *wire.Heartbeat) {
	p.rss.Store(hb.RSS)
	p.cpuMillis.Store(hb.CPUMillis)
}

// silentFor is how long ago the child's latest frame arrived.
func (p *process) silentFor(now time.Time) time.Duration {
	return now.Sub(time.Unix(0, p.lastFrame.Load()))
}

// send writes one frame to the child. Only the slot runner calls it.
func (p *process) send(m wire.Message) error {
	if err := p.enc.Encode(m); err != nil {
		return fmt.Errorf("send %s to %s: %w", m.Kind(), p, err)
	}
	return nil
}

// sendRaw writes an already encoded frame to the child. Only the slot
// runner calls it.
func (p *process) sendRaw(raw []byte) error {
	if err := p.enc.WriteRaw(raw); err != nil {
		return fmt.Errorf("send a frame to %s: %w", p, err)
	}
	return nil
}

// stop sends STOP, closes stdin and forwards SIGTERM: the child finishes
// what it holds and exits 0. Only the slot runner calls it, once.
func (p *process) stop(reason string) {
	p.stopping.Store(true)
	if err := p.send(&wire.Stop{Reason: reason}); err != nil {
		p.log.Warn("could not send STOP", "error", err)
	}
	p.stdin.Close()
	p.signal(syscall.SIGTERM)
}

// kill ends the child for sure and logs why, once: the first reason is
// kept and later calls do nothing. Safe for concurrent use.
func (p *process) kill(reason string) {
	p.mu.Lock()
	first := p.killReason == ""
	if first {
		p.killReason = reason
	}
	p.mu.Unlock()
	if !first || !p.alive() {
		return
	}
	if strings.HasPrefix(reason, "hung") {
		p.log.Error("killing hung child", "why", reason)
	} else {
		p.log.Warn("killing the child", "why", reason)
	}
	p.signal(os.Kill)
}

// killedFor is why the parent killed the child, or "".
func (p *process) killedFor() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.killReason
}

// wait returns once the process exited and everything it wrote was read.
func (p *process) wait() {
	<-p.exited
	<-p.drained
	p.stdin.Close()
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

// cleanExit reports whether the child exited 0 after being sent STOP,
// without being killed. Call it after wait.
func (p *process) cleanExit() bool {
	return p.stopping.Load() && p.killedFor() == "" && p.err == nil
}

// exitError describes how a child ended: the parent's reason for killing
// it, or its exit status. Call it after wait.
func (p *process) exitError() error {
	if why := p.killedFor(); why != "" {
		return fmt.Errorf("killed by the parent: %s", why)
	}
	if p.err != nil {
		return p.err
	}
	return errors.New("exited with status 0 without being asked to stop")
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
