package schema

// ReadHeartbeatJSON reads a heartbeat from its JSON body without building
// a generic tree: every node hears every node's heartbeat each second, so
// this is the commonest message of a large cluster. It takes the body as
// nodes write it: one object of the heartbeat's keys (each at most once,
// in any order), ASCII strings without escapes, integers without a
// fraction or exponent, and "load" an object of "inflight" and "limit".
// For anything else (another key, a null, an escape, a float, a check that
// fails) it reports false, and the caller reads the body the general way
// (ReadHeartbeat), which accepts and refuses exactly what it would have; a
// heartbeat it reads is the one ReadHeartbeat gives. It takes a third to
// a half of the general reader's time (codec's BenchmarkHeartbeatDecode).
func ReadHeartbeatJSON(data []byte) (*Heartbeat, bool) {
	s := hbScanner{b: data}
	h := &Heartbeat{}
	seen, ok := s.object(func(key []byte) (uint8, bool) { return s.field(h, key) })
	if !ok {
		return nil, false
	}
	s.space()
	const required = 1<<0 | 1<<1 | 1<<2 | 1<<4 // cluster, node, incarnation, version
	if s.i != len(s.b) || seen&required != required || checkID(h.Cluster) != nil || checkID(h.Node) != nil ||
		h.Incarnation <= 0 || h.Incarnation > MaxProtoInt || h.Version < 0 || h.Version > MaxProtoInt ||
		len(h.Instance) > MaxInstanceLen {
		return nil, false
	}
	return h, true
}

// hbScanner reads the subset of JSON ReadHeartbeatJSON takes.
type hbScanner struct {
	b []byte
	i int
}

// field reads the value of key into h and returns key's bit.
func (s *hbScanner) field(h *Heartbeat, key []byte) (uint8, bool) {
	var ok bool
	switch string(key) {
	case "cluster":
		h.Cluster, ok = s.str()
		return 1 << 0, ok
	case "node":
		h.Node, ok = s.str()
		return 1 << 1, ok
	case "incarnation":
		h.Incarnation, ok = s.int()
		return 1 << 2, ok
	case "instance":
		h.Instance, ok = s.str()
		return 1 << 3, ok
	case "version":
		h.Version, ok = s.int()
		return 1 << 4, ok
	case "seq":
		h.Seq, ok = s.int()
		return 1 << 5, ok
	case "load":
		return 1 << 6, s.load(&h.Load)
	}
	return 0, false
}

func (s *hbScanner) load(l *Load) bool {
	_, ok := s.object(func(key []byte) (uint8, bool) {
		var ok bool
		switch string(key) {
		case "inflight":
			l.Inflight, ok = s.int()
			return 1, ok
		case "limit":
			l.Limit, ok = s.int()
			return 2, ok
		}
		return 0, false
	})
	return ok
}

// object reads an object whose keys field reads, each at most once: field
// reads the key's value and returns the key's bit. It returns the bits
// of the keys read.
func (s *hbScanner) object(field func(key []byte) (uint8, bool)) (seen uint8, ok bool) {
	if !s.byte('{') {
		return 0, false
	}
	for first := true; ; first = false {
		if s.byte('}') {
			return seen, true
		}
		if !first && !s.byte(',') {
			return 0, false
		}
		key, ok := s.raw()
		if !ok || !s.byte(':') {
			return 0, false
		}
		bit, ok := field(key)
		if !ok || seen&bit != 0 {
			return 0, false
		}
		seen |= bit
	}
}

func (s *hbScanner) space() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// byte consumes c (after white space) if it comes next.
func (s *hbScanner) byte(c byte) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str reads a string of printable ASCII without escapes.
func (s *hbScanner) str() (string, bool) {
	b, ok := s.raw()
	return string(b), ok
}

// raw is str without the copy.
func (s *hbScanner) raw() ([]byte, bool) {
	if !s.byte('"') {
		return nil, false
	}
	start := s.i
	for ; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return s.b[start : s.i-1], true
		case c < 0x20 || c >= 0x7f || c == '\\':
			return nil, false
		}
	}
	return nil, false
}

// int reads an integer of at most 18 digits, without a sign on zero or a
// leading zero.
func (s *hbScanner) int() (int64, bool) {
	s.space()
	neg := s.i < len(s.b) && s.b[s.i] == '-'
	if neg {
		s.i++
	}
	start := s.i
	var v int64
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		v = v*10 + int64(s.b[s.i]-'0')
		s.i++
	}
	n := s.i - start
	if n == 0 || n > 18 || (s.b[start] == '0' && (n > 1 || neg)) {
		return 0, false
	}
	if s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		return 0, false
	}
	if neg {
		v = -v
	}
	return v, true
}
