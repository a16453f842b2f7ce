package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of CPU times in /proc/<pid>/stat. It is
// 100 on every Linux architecture Go supports (the kernel fixes it for
// user space whatever CONFIG_HZ is), and Go cannot call sysconf without
// cgo.
const clockTicks = 100

// procStat is what a CPU accounting sample needs from /proc/<pid>/stat.
type procStat struct {
	ppid  int
	ticks uint64 // utime + stime: this process's own CPU time
}

// parseStat reads a /proc/<pid>/stat line. The command name (field 2) may
// hold spaces and parentheses, so fields are counted from the last ')'.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 > len(b) {
		return procStat{}, errors.New("no ')' after the command name")
	}
	f := strings.Fields(string(b[i+2:]))
	// f[0] is field 3 (state): field n is f[n-3].
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("%d fields after the command name, want at least 15", len(f))
	}
	ppid, err1 := strconv.Atoi(f[1])
	utime, err2 := strconv.ParseUint(f[11], 10, 64)
	stime, err3 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return procStat{}, err
	}
	return procStat{ppid: ppid, ticks: utime + stime}, nil
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

// machineBusy is the CPU seconds all CPUs have spent busy since boot,
// from the first line of /proc/stat: user, nice, system, irq, softirq and
// steal (time a hypervisor gave to other guests). Guest time is inside
// user already.
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var ticks uint64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		n, _ := strconv.ParseUint(f[i], 10, 64)
		ticks += n
	}
	return float64(ticks) / clockTicks
}

// children lists pid's child processes. /proc/<pid>/task/<tid>/children
// holds the children each thread forked (Go forks from any thread); if the
// kernel lacks that file, every process's parent is checked instead.
func children(pid int) []int {
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if len(files) > 0 {
		var out []int
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			for _, s := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(s); err == nil {
					out = append(out, c)
				}
			}
		}
		return out
	}
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(c); err == nil && st.ppid == pid {
			out = append(out, c)
		}
	}
	return out
}

// role names an ingest process by its command line: "worker.3", "saver.0",
// or "parent" when there is no --role (or it is parent).
func role(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return "unknown"
	}
	r, id := "parent", ""
	for _, a := range strings.Split(string(b), "\x00") {
		if v, ok := strings.CutPrefix(a, "--role="); ok {
			r = v
		} else if v, ok := strings.CutPrefix(a, "--id="); ok {
			id = v
		}
	}
	if r == "parent" || id == "" {
		return r
	}
	return r + "." + id
}

// sampler follows the CPU time of an ingest parent and its children from
// /proc while they run. A child's CPU time vanishes from /proc when the
// parent reaps it, so the sampler polls and keeps each process's last
// value: a child's figure misses at most its last interval. The first
// sample is the baseline, subtracted from every process present then, so
// model loading before the measurement is not counted.
type sampler struct {
	root     int
	interval time.Duration

	mu    sync.Mutex
	base  map[int]uint64
	last  map[int]uint64
	roles map[int]string
	// mem is each worker's last memory reading, taken every memEvery
	// samples (smaps_rollup costs more than stat).
	mem   map[int]procMemory
	ticks int

	stop chan struct{}
	done chan struct{}
}

func newSampler(root int, interval time.Duration) *sampler {
	s := &sampler{
		root: root, interval: interval,
		base: map[int]uint64{}, last: map[int]uint64{}, roles: map[int]string{}, mem: map[int]procMemory{},
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	s.sample(true)
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.sample(false)
			}
		}
	}()
	return s
}

// memEvery is how many samples apart workers' memory is read.
const memEvery = 10

func (s *sampler) sample(baseline bool) {
	pids := append([]int{s.root}, children(s.root)...)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ticks++
	for _, pid := range pids {
		st, err := readStat(pid)
		if err != nil {
			continue // exited between the listing and the read
		}
		if _, seen := s.roles[pid]; !seen {
			s.roles[pid] = role(pid)
			if baseline {
				s.base[pid] = st.ticks
			}
		}
		s.last[pid] = st.ticks
		if s.ticks%memEvery == 0 && strings.HasPrefix(s.roles[pid], "worker") {
			// A zombie's status has no Rss lines: keep the last real reading.
			if m, err := readMemory(pid); err == nil && m.rssAnon+m.rssFile > 0 {
				s.mem[pid] = m
			}
		}
	}
}

// workerMemory averages each worker's last memory reading: taken at most
// memEvery samples before it exited, so after nearly all of its posts.
func (s *sampler) workerMemory() (procMemory, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var sum procMemory
	for _, m := range s.mem {
		sum.rssAnon += m.rssAnon
		sum.rssFile += m.rssFile
		sum.pss += m.pss
	}
	n := int64(len(s.mem))
	if n == 0 {
		return procMemory{}, 0
	}
	return procMemory{sum.rssAnon / n, sum.rssFile / n, sum.pss / n}, int(n)
}

// finish stops sampling and returns CPU seconds by process ("parent",
// "worker.0", ...) since the baseline, and the CPU seconds the baseline
// held (to subtract from a total measured over the processes' lives).
func (s *sampler) finish() (byRole map[string]float64, baseline float64) {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	byRole = map[string]float64{}
	for pid, last := range s.last {
		byRole[s.roles[pid]] += float64(last-s.base[pid]) / clockTicks
	}
	for _, b := range s.base {
		baseline += float64(b) / clockTicks
	}
	return byRole, baseline
}

// pidsWithRole returns root's children whose role starts with prefix.
func pidsWithRole(root int, prefix string) []int {
	var out []int
	for _, c := range children(root) {
		if strings.HasPrefix(role(c), prefix) {
			out = append(out, c)
		}
	}
	return out
}

// gone reports whether pid no longer exists (or is a zombie waiting to be
// reaped, which holds no resources).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, fs.ErrNotExist) {
		return true
	}
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] == 'Z'
	}
	return false
}

// procMemory is what a process holds resident, in KiB, from /proc: its
// private anonymous pages (RssAnon: heap, stacks), its file-backed pages
// (RssFile: the executable and mapped files, such as the NER model image,
// which every worker shares) and its proportional set size (Pss: shared
// pages divided among the processes sharing them).
type procMemory struct{ rssAnon, rssFile, pss int64 }

// parseMemory reads RssAnon and RssFile from a /proc/<pid>/status and Pss
// from a /proc/<pid>/smaps_rollup; a field it cannot find stays 0.
func parseMemory(status, smapsRollup []byte) procMemory {
	field := func(b []byte, key string) int64 {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, key+":"); ok {
				f := strings.Fields(v)
				if len(f) > 0 {
					n, _ := strconv.ParseInt(f[0], 10, 64)
					return n
				}
			}
		}
		return 0
	}
	return procMemory{
		rssAnon: field(status, "RssAnon"),
		rssFile: field(status, "RssFile"),
		pss:     field(smapsRollup, "Pss"),
	}
}

func readMemory(pid int) (procMemory, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procMemory{}, err
	}
	rollup, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid)) // Linux 4.14+; Pss 0 without it
	return parseMemory(status, rollup), nil
}
