package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
)

// Position is how far an input file was read: Rows rows (invalid ones
// included), ending at byte Offset of its text; the last of them started
// at LastAt and hashes to Hash, which tells the file from another under
// the same name. Source names the file.
type Position struct {
	Source string `json:"source"`
	Rows   int64  `json:"rows"`
	Offset int64  `json:"offset"`
	LastAt int64  `json:"last_row_at"`
	Hash   uint64 `json:"last_row_hash"`
}

type posAt struct {
	seq uint64
	pos Position
}

// The state file, written (through a temporary file and a rename) before
// segments are deleted: the first record the spool still holds, so that
// the next start can tell the oldest segment file missing from one
// deleted because it was done, and the input positions that only deleted
// segments held. An earlier version wrote positions.json, the inputs
// alone; it is read when there is no state file, and removed once the
// state file is written.
const (
	stateFile        = "state.json"
	legacyPositions  = "positions.json"
	stateFileVersion = 1
)

type state struct {
	Version int                 `json:"version"`
	Oldest  uint64              `json:"oldest"` // 0: not known
	Inputs  map[string]Position `json:"inputs"`
}

// notePosition records the input position of posts just written, up to
// the record last: it counts once they are durable. s.mu is held.
func (s *Spool) notePosition(last uint64, pos *Position) {
	if pos == nil {
		return
	}
	s.pending = append(s.pending, posAt{last, *pos})
	if !s.sync {
		s.promotePositions(last)
	}
}

// promotePositions makes the positions appended up to seq durable ones.
// s.mu is held.
func (s *Spool) promotePositions(seq uint64) {
	n := 0
	for n < len(s.pending) && s.pending[n].seq <= seq {
		s.pos[s.pending[n].pos.Source] = s.pending[n]
		n++
	}
	s.pending = append(s.pending[:0], s.pending[n:]...)
}

// Position is the durable position of source, and whether there is one:
// a spooled post read from it, or the state file.
func (s *Spool) Position(source string) (Position, bool) {
	s.mu.Lock()
	defer s.unlock()
	p, ok := s.saved[source]
	if q, ok2 := s.pos[source]; ok2 && (!ok || q.pos.Rows >= p.Rows) {
		return q.pos, true
	}
	return p, ok
}

// Forget drops source's position: the input was read to its end and
// everything from it stored, so a later run reads it afresh. It is
// durable in the state file at once, and for good once the segments
// holding posts read from source are deleted (Close deletes them when
// every record is done): until then, a crash brings the position back from
// those records, and a later run resumes at the input's end, reading
// nothing (and counting nothing twice).
func (s *Spool) Forget(source string) error {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	s.mu.Lock()
	delete(s.pos, source)
	s.pending = slices.DeleteFunc(s.pending, func(p posAt) bool { return p.pos.Source == source })
	if _, ok := s.saved[source]; ok {
		delete(s.saved, source)
		s.stateStale = true
	}
	st := state{Version: stateFileVersion, Oldest: s.oldest, Inputs: maps.Clone(s.saved)}
	s.unlock()
	return s.flushState(st)
}

// saveState makes the state file say oldest as the first record kept,
// and hold every durable position, writing it if that changes it.
func (s *Spool) saveState(oldest uint64) error {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	s.mu.Lock()
	if oldest != s.oldest {
		// From now on, whoever writes the state file (Forget, a
		// restore) writes this oldest.
		s.oldest = oldest
		s.stateStale = true
	}
	for src, p := range s.pos {
		if old, ok := s.saved[src]; !ok || old != p.pos {
			s.saved[src] = p.pos
			s.stateStale = true
		}
	}
	st := state{Version: stateFileVersion, Oldest: oldest, Inputs: maps.Clone(s.saved)}
	s.unlock()
	return s.flushState(st)
}

// flushState writes st if the state file is stale. s.stateMu is held.
func (s *Spool) flushState(st state) error {
	if !s.stateStale {
		return nil
	}
	if err := s.writeState(st); err != nil {
		return err
	}
	s.stateStale = false
	return nil
}

// writeState writes st durably. s.stateMu is held; a caller that changed
// the state first set stateStale, so that a failed write is tried again.
func (s *Spool) writeState(st state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(s.dir, stateFile)
	f, err := s.writeFile(path, append(b, '\n'))
	if err != nil {
		return fmt.Errorf("spool: write %s: %w", path, err)
	}
	f.Close()
	if err := s.fs.Remove(filepath.Join(s.dir, legacyPositions)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("cannot remove the positions file the state file replaces", "error", err)
	}
	return nil
}

// loadState reads the state file (or an earlier version's positions
// file). A file that is not valid is refused with what to do: it is
// ingest's own, so this is damage or a hand edit.
func (s *Spool) loadState() error {
	path := filepath.Join(s.dir, stateFile)
	b, err := s.readAll(path)
	if errors.Is(err, os.ErrNotExist) {
		return s.loadLegacyPositions()
	}
	if err != nil {
		return fmt.Errorf("spool: read %s: %w", path, err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil || st.Version != stateFileVersion || st.Inputs == nil {
		why := "not the state of this version of ingest"
		if err != nil {
			why = err.Error()
		}
		return fmt.Errorf("spool: %s is not valid (%s): it records the spool's first record and how far --input files were read; move it aside to start without it (--input files are then read from their start)", path, why)
	}
	if err := checkPositions(path, st.Inputs); err != nil {
		return err
	}
	s.saved, s.oldest = st.Inputs, st.Oldest
	return nil
}

func (s *Spool) loadLegacyPositions() error {
	path := filepath.Join(s.dir, legacyPositions)
	b, err := s.readAll(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("spool: read %s: %w", path, err)
	}
	var saved map[string]Position
	if err := json.Unmarshal(b, &saved); err != nil || saved == nil {
		why := "null"
		if err != nil {
			why = err.Error()
		}
		return fmt.Errorf("spool: %s is not valid JSON positions (%s): it records how far --input files were read; delete it to read them from the start", path, why)
	}
	if err := checkPositions(path, saved); err != nil {
		return err
	}
	s.saved = saved
	return nil
}

// checkPositions refuses positions that cannot have been written.
func checkPositions(path string, inputs map[string]Position) error {
	for src, p := range inputs {
		if p.Source != src || p.Rows < 0 || p.Offset < 0 || p.LastAt < 0 || p.LastAt > p.Offset {
			return fmt.Errorf("spool: %s holds an impossible position for %q (%+v): move it aside to read --input files from their start", path, src, p)
		}
	}
	return nil
}

// readAll reads a small file through the FS.
func (s *Spool) readAll(path string) ([]byte, error) {
	f, err := s.fs.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > 64<<20 {
		return nil, fmt.Errorf("%d bytes, far beyond any state", fi.Size())
	}
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil && len(b) > 0 {
		return nil, err
	}
	return b, nil
}
