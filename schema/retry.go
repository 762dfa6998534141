package schema

import (
	"fmt"
	"math"
	"time"
)

// Bounds of a retry policy (docs/PROTOCOL.md §7.1).
const (
	// MaxRetryAttempts bounds RetryPolicy.Attempts.
	MaxRetryAttempts = 100
	// MaxBackoffMS bounds a policy's backoffs, and is the cap of one
	// whose MaxBackoffMS is 0: a day.
	MaxBackoffMS = 24 * 60 * 60 * 1000
	// MaxRetryMultiplier bounds RetryPolicy.Multiplier.
	MaxRetryMultiplier = 100
)

// Check reports whether p is within the bounds of docs/PROTOCOL.md §7.1,
// as INVALID_REQUEST naming the key at fault under key ("retry.f").
func (p RetryPolicy) Check(key string) *Error {
	switch {
	case p.Attempts < 1 || p.Attempts > MaxRetryAttempts:
		return invalid(key+".attempts", "must be 1 to %d, got %d", MaxRetryAttempts, p.Attempts)
	case p.InitialBackoffMS < 0 || p.InitialBackoffMS > MaxBackoffMS:
		return invalid(key+".initial_backoff_ms", "must be 0 to %d ms, got %d", MaxBackoffMS, p.InitialBackoffMS)
	case p.MaxBackoffMS < 0 || p.MaxBackoffMS > MaxBackoffMS:
		return invalid(key+".max_backoff_ms", "must be 0 to %d ms, got %d", MaxBackoffMS, p.MaxBackoffMS)
	case p.MaxBackoffMS != 0 && p.MaxBackoffMS < p.InitialBackoffMS:
		return invalid(key+".max_backoff_ms", "must be 0 or at least initial_backoff_ms (%d), got %d", p.InitialBackoffMS, p.MaxBackoffMS)
	case p.Multiplier != 0 && !(p.Multiplier >= 1 && p.Multiplier <= MaxRetryMultiplier):
		return invalid(key+".multiplier", "must be 1 to %d, got %v", MaxRetryMultiplier, p.Multiplier)
	case !(p.Jitter >= 0 && p.Jitter <= 1):
		return invalid(key+".jitter", "must be 0 to 1, got %v", p.Jitter)
	}
	return nil
}

// Backoff is the wait before retry n (1 for the first) without jitter:
// InitialBackoffMS × Multiplier^(n-1), at most MaxBackoffMS (a day when
// 0).
func (p RetryPolicy) Backoff(n int) time.Duration {
	limit := float64(p.MaxBackoffMS)
	if limit <= 0 {
		limit = MaxBackoffMS
	}
	m := p.Multiplier
	if m == 0 {
		m = 1
	}
	ms := min(float64(p.InitialBackoffMS)*math.Pow(m, float64(max(n-1, 0))), limit)
	return time.Duration(ms * float64(time.Millisecond))
}

// Jittered is d moved by up to p.Jitter of it, at random: u, in [0, 1),
// is the draw.
func (p RetryPolicy) Jittered(d time.Duration, u float64) time.Duration {
	if p.Jitter == 0 {
		return d
	}
	return time.Duration(float64(d) * (1 + p.Jitter*(2*u-1)))
}

var policyFields = []field[RetryPolicy]{
	{key: "attempts", read: func(r Reader, p *RetryPolicy, a at) *Error {
		if r.Next() == KindNull {
			r.Skip() // as if left out: one attempt
			return nil
		}
		var e *Error
		p.Attempts, e = readInt(r, a)
		return e
	}},
	{key: "initial_backoff_ms", read: intF(func(p *RetryPolicy) *int64 { return &p.InitialBackoffMS }, false, 0, 0, "")},
	{key: "max_backoff_ms", read: intF(func(p *RetryPolicy) *int64 { return &p.MaxBackoffMS }, false, 0, 0, "")},
	{key: "multiplier", read: numF(func(p *RetryPolicy) *float64 { return &p.Multiplier })},
	{key: "jitter", read: numF(func(p *RetryPolicy) *float64 { return &p.Jitter })},
}

// numF reads a number, integer or not, into dst; null is 0.
func numF[T any](dst func(*T) *float64) func(Reader, *T, at) *Error {
	return func(r Reader, x *T, a at) *Error {
		switch k := r.Next(); k {
		case KindNumber:
			*dst(x) = toFloat(r.Value())
			return nil
		case KindNull:
			r.Skip()
			return nil
		default:
			r.Skip()
			return kindErr(a.String(), "number", k)
		}
	}
}

// toFloat converts a decoded number to float64.
func toFloat(v any) float64 {
	switch n := v.(type) {
	case float64:
		return n
	case int64:
		return float64(n)
	case uint64:
		return float64(n)
	case int:
		return float64(n)
	case float32:
		return float64(n)
	}
	return math.NaN()
}

// readRetry reads a hello's retry: a policy by function. A policy of one
// attempt (or none said) is left out, as are, once the hello is read,
// the policies of functions the hello does not offer (see ReadHello).
func readRetry(r Reader, h *Hello, a at) *Error {
	h.Retry = nil
	_, err := readEntries(r, a.key, MaxFuns, func(f string) *Error {
		if e := checkFunName(f); e != nil {
			r.Skip()
			return invalid(a.key, "%s", e.Message)
		}
		key := a.key + "." + f
		p := RetryPolicy{Attempts: 1}
		_, e := readStruct(r, &p, key, key, policyFields)
		if e == nil {
			e = p.Check(key)
		}
		if e != nil || p.Attempts == 1 {
			delete(h.Retry, f)
			return e
		}
		if h.Retry == nil {
			h.Retry = map[string]RetryPolicy{}
		}
		h.Retry[f] = p
		return nil
	})
	return err
}

// dropUnoffered removes the retry policies of functions h does not offer.
func dropUnoffered(h *Hello) {
	for f := range h.Retry {
		if _, ok := h.Funs[f]; !ok {
			delete(h.Retry, f)
		}
	}
	if len(h.Retry) == 0 {
		h.Retry = nil
	}
}

// String is the policy as a log or message shows it.
func (p RetryPolicy) String() string {
	return fmt.Sprintf("attempts=%d initial_backoff_ms=%d max_backoff_ms=%d multiplier=%v jitter=%v",
		p.Attempts, p.InitialBackoffMS, p.MaxBackoffMS, p.Multiplier, p.Jitter)
}

// WriteFields writes the policy's keys.
func (p RetryPolicy) WriteFields(w FieldWriter) {
	w.Int("attempts", p.Attempts)
	w.Int("initial_backoff_ms", p.InitialBackoffMS)
	intOpt(w, "max_backoff_ms", p.MaxBackoffMS)
	if p.Multiplier != 0 {
		w.Any("multiplier", p.Multiplier)
	}
	if p.Jitter != 0 {
		w.Any("jitter", p.Jitter)
	}
}
