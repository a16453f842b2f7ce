package spool

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// errorFS is the OS file system with faults injected, as Pebble's
// vfs/errorfs does: a rule makes one kind of call (an op) on the paths it
// matches fail with an error, a number of times or until cleared. It also
// records every call, and the size of each file at its last successful
// sync, so that a test can tell what is durable.
type errorFS struct {
	inner FS

	mu     sync.Mutex
	rules  []*rule
	calls  []fsCall
	open   map[string][]*errFile // open files by their current name
	synced map[string]int64      // bytes of each file made durable, by name
	gate   chan struct{}         // non-nil: syncs of segments wait for it to close
	free   int64                 // >= 0: what Free reports
	// after, if set, is called after every call that changed the
	// directory (a write, a truncate, a create, a rename, a remove), with
	// the file and, for a write, where it wrote: a crash could have
	// happened just then.
	after func(o op, path string, off, n int64)
}

// op is a kind of call on an FS or File: a call site of the spool's file
// operations.
type op int

const (
	opOpen     op = iota // FS.OpenFile: create or open
	opWrite              // File.WriteAt
	opSync               // File.Sync (fdatasync)
	opTruncate           // File.Truncate
	opRename             // FS.Rename
	opRemove             // FS.Remove
	opMkdir              // FS.MkdirAll
	opSyncDir            // FS.SyncDir
	opAllocate           // File.Allocate (fallocate)
	opFree               // FS.Free (statfs)
	opWritable           // FS.Writable
	opStat               // FS.Stat
	opList               // FS.List
	opRead               // File.ReadAt
	numOps
)

func (o op) String() string {
	return [...]string{"open", "write", "sync", "truncate", "rename", "remove", "mkdir", "syncdir",
		"fallocate", "statfs", "writable", "stat", "list", "read"}[o]
}

// rule is a fault: calls of op on paths that match fail with err, n more
// times (n < 0: until cleared). A short write writes half of what it was
// given before it fails.
type rule struct {
	op    op
	match func(path string) bool
	err   syscall.Errno
	n     int
	short bool
	hits  int
}

type fsCall struct {
	op   op
	path string
	err  error
}

func newErrorFS() *errorFS {
	return &errorFS{inner: OS, open: make(map[string][]*errFile), synced: make(map[string]int64), free: -1}
}

// Path predicates for rules.
func anyPath(string) bool     { return true }
func isSegment(p string) bool { return strings.HasSuffix(p, segmentSuffix) }
func isNewSeg(p string) bool  { return strings.HasSuffix(p, segmentSuffix+tmpSuffix) }
func isState(p string) bool   { return strings.HasPrefix(filepath.Base(p), stateFile) }
func isDir(dir string) func(string) bool {
	return func(p string) bool { return filepath.Clean(p) == filepath.Clean(dir) }
}

// inject adds a rule and returns it.
func (fs *errorFS) inject(r rule) *rule {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if r.match == nil {
		r.match = anyPath
	}
	fs.rules = append(fs.rules, &r)
	return &r
}

// clear removes every rule.
func (fs *errorFS) clear() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.rules = nil
}

// gateSyncs makes every sync of a segment wait until the returned
// channel is closed.
func (fs *errorFS) gateSyncs() chan struct{} {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.gate = make(chan struct{})
	return fs.gate
}

// setFree makes Free report n bytes free (n < 0: the truth).
func (fs *errorFS) setFree(n int64) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.free = n
}

// count is how many calls of op on paths that match were made.
func (fs *errorFS) count(o op, match func(string) bool) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := 0
	for _, c := range fs.calls {
		if c.op == o && match(c.path) {
			n++
		}
	}
	return n
}

// hits is how many calls a rule failed.
func (fs *errorFS) hits(r *rule) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return r.hits
}

// durable is how many bytes of the file at path were synced.
func (fs *errorFS) durable(path string) int64 {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.synced[filepath.Clean(path)]
}

// fault decides the fate of a call: nil, or the error it fails with (and
// whether a write is to be short).
func (fs *errorFS) fault(o op, path string) (err error, short bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, r := range fs.rules {
		if r.op == o && r.n != 0 && r.match(path) {
			if r.n > 0 {
				r.n--
			}
			r.hits++
			err, short = &os.PathError{Op: o.String(), Path: path, Err: r.err}, r.short
			break
		}
	}
	fs.calls = append(fs.calls, fsCall{o, path, err})
	return err, short
}

func (fs *errorFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	name = filepath.Clean(name)
	if err, _ := fs.fault(opOpen, name); err != nil {
		return nil, err
	}
	f, err := fs.inner.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	ef := &errFile{File: f, fs: fs, path: name}
	fs.mu.Lock()
	fs.open[name] = append(fs.open[name], ef)
	if flag&os.O_TRUNC != 0 {
		fs.synced[name] = 0
	}
	fs.mu.Unlock()
	if flag&(os.O_CREATE|os.O_TRUNC) != 0 {
		fs.changed(opOpen, name, 0, 0)
	}
	return ef, nil
}

func (fs *errorFS) Remove(name string) error {
	name = filepath.Clean(name)
	if err, _ := fs.fault(opRemove, name); err != nil {
		return err
	}
	err := fs.inner.Remove(name)
	if err == nil {
		fs.mu.Lock()
		delete(fs.synced, name)
		for _, f := range fs.open[name] {
			f.path = "" // it lives on, unlinked, under no name
		}
		delete(fs.open, name)
		fs.mu.Unlock()
		fs.changed(opRemove, name, 0, 0)
	}
	return err
}

func (fs *errorFS) Rename(oldname, newname string) error {
	oldname, newname = filepath.Clean(oldname), filepath.Clean(newname)
	if err, _ := fs.fault(opRename, newname); err != nil {
		return err
	}
	err := fs.inner.Rename(oldname, newname)
	if err == nil {
		fs.mu.Lock()
		for _, f := range fs.open[oldname] {
			f.path = newname
		}
		fs.open[newname] = fs.open[oldname]
		delete(fs.open, oldname)
		fs.synced[newname] = fs.synced[oldname]
		delete(fs.synced, oldname)
		fs.mu.Unlock()
		fs.changed(opRename, newname, 0, 0)
	}
	return err
}

// changed calls the after hook.
func (fs *errorFS) changed(o op, path string, off, n int64) {
	fs.mu.Lock()
	after := fs.after
	fs.mu.Unlock()
	if after != nil {
		after(o, path, off, n)
	}
}

func (fs *errorFS) MkdirAll(dir string, perm os.FileMode) error {
	if err, _ := fs.fault(opMkdir, filepath.Clean(dir)); err != nil {
		return err
	}
	return fs.inner.MkdirAll(dir, perm)
}

func (fs *errorFS) Stat(name string) (os.FileInfo, error) {
	if err, _ := fs.fault(opStat, filepath.Clean(name)); err != nil {
		return nil, err
	}
	return fs.inner.Stat(name)
}

func (fs *errorFS) List(dir string) ([]string, error) {
	if err, _ := fs.fault(opList, filepath.Clean(dir)); err != nil {
		return nil, err
	}
	return fs.inner.List(dir)
}

func (fs *errorFS) SyncDir(dir string) error {
	if err, _ := fs.fault(opSyncDir, filepath.Clean(dir)); err != nil {
		return err
	}
	return fs.inner.SyncDir(dir)
}

func (fs *errorFS) Writable(dir string) error {
	if err, _ := fs.fault(opWritable, filepath.Clean(dir)); err != nil {
		return err
	}
	return fs.inner.Writable(dir)
}

func (fs *errorFS) Free(dir string) (free, size int64, err error) {
	if err, _ := fs.fault(opFree, filepath.Clean(dir)); err != nil {
		return 0, 0, err
	}
	free, size, err = fs.inner.Free(dir)
	fs.mu.Lock()
	if fs.free >= 0 {
		free = fs.free
	}
	fs.mu.Unlock()
	return free, size, err
}

// errFile is a File of an errorFS.
type errFile struct {
	File
	fs   *errorFS
	path string // its current name; under fs.mu
}

func (f *errFile) name() string {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	return f.path
}

func (f *errFile) WriteAt(b []byte, off int64) (int, error) {
	err, short := f.fs.fault(opWrite, f.name())
	if err == nil {
		n, err := f.File.WriteAt(b, off)
		if n > 0 {
			f.fs.changed(opWrite, f.name(), off, int64(n))
		}
		return n, err
	}
	if short {
		n, werr := f.File.WriteAt(b[:len(b)/2], off)
		if werr != nil {
			return n, werr
		}
		return n, err
	}
	return 0, err
}

func (f *errFile) ReadAt(b []byte, off int64) (int, error) {
	if err, _ := f.fs.fault(opRead, f.name()); err != nil {
		return 0, err
	}
	return f.File.ReadAt(b, off)
}

func (f *errFile) Truncate(size int64) error {
	if err, _ := f.fs.fault(opTruncate, f.name()); err != nil {
		return err
	}
	if err := f.File.Truncate(size); err != nil {
		return err
	}
	f.fs.changed(opTruncate, f.name(), size, 0)
	return nil
}

func (f *errFile) Sync() error {
	name := f.name()
	f.fs.mu.Lock()
	gate := f.fs.gate
	f.fs.mu.Unlock()
	if gate != nil && isSegment(name) {
		<-gate
	}
	// What a sync makes durable is what was written before it began.
	fi, statErr := f.File.Stat()
	if err, _ := f.fs.fault(opSync, name); err != nil {
		return err
	}
	if err := f.File.Sync(); err != nil {
		return err
	}
	if statErr == nil {
		f.fs.mu.Lock()
		if f.path == name { // not renamed meanwhile
			f.fs.synced[name] = fi.Size()
		}
		f.fs.mu.Unlock()
	}
	return nil
}

func (f *errFile) Allocate(size int64) error {
	if err, _ := f.fs.fault(opAllocate, f.name()); err != nil {
		return err
	}
	return f.File.Allocate(size)
}

func (f *errFile) String() string { return fmt.Sprintf("errFile(%s)", f.name()) }
