package token

import "sync/atomic"

// Source holds a token that may change while the process runs: SIGHUP
// re-reads the token files. It is safe for concurrent use; a nil *Source
// and the zero value hold no token.
type Source struct {
	v atomic.Pointer[[]byte]
}

// NewSource returns a Source holding t ("" for none).
func NewSource(t string) *Source {
	s := &Source{}
	s.Set(t)
	return s
}

// Set replaces the token; "" means none.
func (s *Source) Set(t string) {
	if t == "" {
		s.v.Store(nil)
		return
	}
	b := []byte(t)
	s.v.Store(&b)
}

// Get returns the token, nil when there is none. The caller must not
// modify it.
func (s *Source) Get() []byte {
	if s == nil {
		return nil
	}
	if p := s.v.Load(); p != nil {
		return *p
	}
	return nil
}
