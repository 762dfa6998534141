package schema

import "fmt"

// ReadHello reads a hello (docs/PROTOCOL.md §7) from r.
func ReadHello(r Reader) (*Hello, error) {
	h := &Hello{Proto: Proto, Funs: map[string][]string{}}
	_, err := readStruct(r, h, "hello", "", helloFields)
	if e := r.Err(); e != nil {
		return nil, e
	}
	if err != nil {
		return nil, err
	}
	// A node may sit on a NATS cluster of many servers: keep the first
	// MaxURLs rather than drop its hello.
	h.AdvertisedURLs = h.AdvertisedURLs[:min(len(h.AdvertisedURLs), MaxURLs)]
	dropUnoffered(h)
	return h, nil
}

var helloFields = []field[Hello]{
	{key: "kind", read: kindF(func(h *Hello) *string { return &h.Kind }, KindHello)},
	{key: "cluster", required: true, read: idF(func(h *Hello) *string { return &h.Cluster })},
	{key: "node", required: true, read: idF(func(h *Hello) *string { return &h.Node })},
	{key: "incarnation", required: true, read: incarnationF(func(h *Hello) *int64 { return &h.Incarnation })},
	{key: "version", required: true, read: versionF(func(h *Hello) *int64 { return &h.Version })},
	{key: "instance", read: strF(func(h *Hello) *string { return &h.Instance }, false, MaxInstanceLen)},
	{key: "proto", read: func(r Reader, h *Hello, a at) *Error {
		p, e := readInt(r, a)
		h.Proto = Proto
		if p != 0 {
			h.Proto = int(min(max(p, -1), 1<<16)) // out-of-range protos stay unsupported
		}
		return e
	}},
	{key: "funs", read: readFuns},
	{key: "codecs", read: listF(func(h *Hello) *[]string { return &h.Codecs }, maxCodecs, maxShortString)},
	{key: "bare", read: strF(func(h *Hello) *string { return &h.Bare }, false, maxShortString)},
	{key: "advertised_urls", read: listF(func(h *Hello) *[]string { return &h.AdvertisedURLs }, -1, maxURLLen)},
	{key: "idempotent", read: listF(func(h *Hello) *[]string { return &h.Idempotent }, MaxFuns, 256)},
	{key: "retry_after_ms", read: readRetryAfter},
	{key: "meta", read: readMeta},
	{key: "retry", read: readRetry},
}

// listF reads a list of strings of at most maxEntries entries (any number
// when maxEntries < 0), each at most maxLen bytes.
func listF[T any](dst func(*T) *[]string, maxEntries, maxLen int) func(Reader, *T, at) *Error {
	return func(r Reader, x *T, a at) *Error {
		l, n, e := readStrListN(r, a)
		*dst(x) = l
		switch {
		case maxEntries >= 0 && n > maxEntries:
			return tooMany(a.key, n, maxEntries)
		case e != nil:
			return e
		}
		for i, s := range l {
			if len(s) > maxLen {
				return tooLong(fmt.Sprintf("%s[%d]", a.key, i), "max_"+a.key+"_len", maxLen)
			}
		}
		return nil
	}
}

// readEntries reads a map of entries named by the sender, each value by
// each (which keeps it, or drops what an earlier copy of the name left).
// More than maxEntries names is an error first; then, of the entries
// that fail, the error of the smallest name.
func readEntries(r Reader, key string, maxEntries int, each func(name string) *Error) (isMap bool, err *Error) {
	switch k := r.Next(); k {
	case KindMap:
	case KindNull:
		r.Skip()
		return false, nil
	default:
		r.Skip()
		return false, kindErr(key, "map", k)
	}
	r.Map()
	names := map[string]*Error{}
	for name, ok := r.Key(); ok; name, ok = r.Key() {
		names[name] = each(name)
	}
	if len(names) > maxEntries {
		return true, tooMany(key, len(names), maxEntries)
	}
	first := ""
	for n, e := range names {
		if e != nil && (err == nil || n < first) {
			first, err = n, e
		}
	}
	return true, err
}

// readFuns reads a hello's funs: function names, each with its locs.
func readFuns(r Reader, h *Hello, a at) *Error {
	h.Funs = map[string][]string{}
	_, err := readEntries(r, a.key, MaxFuns, func(f string) *Error {
		l, e := readStrList(r, at{key: "funs." + f})
		if e = checkFun(f, l, e); e != nil {
			delete(h.Funs, f)
			return e
		}
		if l == nil {
			l = []string{}
		}
		h.Funs[f] = l
		return nil
	})
	return err
}

// checkFun checks a function of a hello's funs and its locs, read with
// the error listErr.
func checkFun(f string, locs []string, listErr *Error) *Error {
	if e := checkFunName(f); e != nil {
		return invalid("funs", "%s", e.Message)
	}
	if listErr != nil {
		return listErr
	}
	if len(locs) > MaxLocs {
		return tooMany("funs."+f, len(locs), MaxLocs)
	}
	for _, loc := range locs {
		if e := checkLoc(loc); e != nil {
			return invalid("funs."+f, "%s", e.Message)
		}
	}
	return nil
}

// readRetryAfter reads a hello's retry_after_ms; zero values are left
// out.
func readRetryAfter(r Reader, h *Hello, a at) *Error {
	h.RetryAfterMS = nil
	_, err := readEntries(r, a.key, MaxFuns, func(f string) *Error {
		ms, e := readReqInt(r, at{a.key, f})
		if e == nil && (ms < 0 || ms > maxRetryAfter) {
			e = invalid("retry_after_ms", "must be 0 to %d ms", maxRetryAfter)
		}
		if e != nil || ms == 0 {
			delete(h.RetryAfterMS, f)
			return e
		}
		if h.RetryAfterMS == nil {
			h.RetryAfterMS = map[string]int64{}
		}
		h.RetryAfterMS[f] = ms
		return nil
	})
	return err
}

// readMeta reads a hello's meta: strings, with numbers and booleans kept
// as text.
func readMeta(r Reader, h *Hello, a at) *Error {
	meta := map[string]string{}
	_, err := readEntries(r, a.key, MaxMeta, func(k string) *Error {
		v, e := readMetaValue(r, k)
		if e != nil {
			delete(meta, k)
			return e
		}
		meta[k] = v
		return nil
	})
	h.Meta = nil
	if err == nil && len(meta) > 0 {
		h.Meta = meta
	}
	return err
}

// readMetaValue reads the value of meta's key k.
func readMetaValue(r Reader, k string) (string, *Error) {
	if len(k) > MaxMetaKey {
		r.Skip()
		return "", invalid("meta", "key %s is longer than %d bytes", Clip(k), MaxMetaKey)
	}
	var v string
	switch kind := r.Next(); kind {
	case KindString:
		v = r.Str()
	case KindNumber, KindBool:
		v = fmt.Sprint(r.Value())
	default:
		r.Skip()
		return "", kindErr("meta."+k, "string", kind)
	}
	if len(v) > MaxMetaValue {
		return "", tooLong("meta."+k, "max_meta_value_len", MaxMetaValue)
	}
	return v, nil
}
