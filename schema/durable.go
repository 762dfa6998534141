package schema

// Durable requests: the status subject of docs/PROTOCOL.md §4.8.

// The states of a durable request (Status.Status).
const (
	// StatusAccepted: recorded, no planner runs it yet.
	StatusAccepted = "accepted"
	// StatusRunning: a planner holds its lease and runs it.
	StatusRunning = "running"
	// StatusDone: it succeeded; Status.Result holds its results.
	StatusDone = "done"
	// StatusFailed: it ended with Status.Error.
	StatusFailed = "failed"
	// StatusCancelled: its caller cancelled it.
	StatusCancelled = "cancelled"
	// StatusUnknown: no durable request of this caller has the id (or its
	// outcome outlived its result_ttl_ms); with Status.Error, the query
	// itself could not be answered.
	StatusUnknown = "unknown"
)

// StatusEnded reports whether status is one a request ends in.
func StatusEnded(status string) bool {
	return status == StatusDone || status == StatusFailed || status == StatusCancelled
}

// MaxStatusWait bounds StatusRequest.WaitMS: a query waits at most a
// minute for a request to end.
const MaxStatusWait = 60_000

// StatusRequest asks, on P.<cluster>.status, where a durable request is.
type StatusRequest struct {
	ID string `json:"id"`
	// WaitMS: answer once the request has ended, or after this long
	// (at most MaxStatusWait), whichever comes first. 0: at once.
	WaitMS int64 `json:"wait_ms,omitempty"`
}

// Status is the answer to a StatusRequest, and to a request with Submit.
type Status struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	// Planner is the node that runs (or last ran) it; "" when none.
	Planner   string `json:"planner,omitempty"`
	StepsDone int64  `json:"steps_done"`
	Steps     int64  `json:"steps"`
	// Result holds the results, as a response's results, once it ended
	// (the partial results of one that failed).
	Result map[string]any `json:"result,omitempty"`
	// Errors: a request with on_error "continue", by step.
	Errors map[string]*Error `json:"errors,omitempty"`
	// Error is the error the request ended with; with StatusUnknown, why
	// the query or submission was refused.
	Error *Error `json:"error,omitempty"`
}

// WriteFields writes the status query's keys.
func (q StatusRequest) WriteFields(w FieldWriter) {
	w.Str("id", q.ID)
	intOpt(w, "wait_ms", q.WaitMS)
}

// WriteFields writes the status's keys.
func (s Status) WriteFields(w FieldWriter) {
	w.Str("id", s.ID)
	w.Str("status", s.Status)
	strOpt(w, "planner", s.Planner)
	w.Int("steps_done", s.StepsDone)
	w.Int("steps", s.Steps)
	if s.Result != nil {
		w.Any("result", s.Result)
	}
	if s.Errors != nil {
		w.Any("errors", s.Errors)
	}
	if s.Error != nil {
		w.Any("error", s.Error)
	}
}

// ReadStatusRequest reads a StatusRequest from r.
func ReadStatusRequest(r Reader) (*StatusRequest, error) {
	return readTop(r, "status query", statusRequestFields)
}

var statusRequestFields = []field[StatusRequest]{
	{key: "id", required: true, read: func(r Reader, q *StatusRequest, a at) (e *Error) {
		if q.ID, e = readBoundedStr(r, a.key, true, MaxRequestIDLen); e == nil && q.ID == "" {
			e = invalid("id", "must not be empty")
		}
		return e
	}},
	{key: "wait_ms", read: intF(func(q *StatusRequest) *int64 { return &q.WaitMS }, false, 0, MaxStatusWait, "0 to 60000")},
}

// ReadStatus reads a Status from r.
func ReadStatus(r Reader) (*Status, error) { return readTop(r, "status", statusFields) }

var statusFields = []field[Status]{
	{key: "id", read: strF(func(s *Status) *string { return &s.ID }, false, MaxRequestIDLen)},
	{key: "status", required: true, read: func(r Reader, s *Status, a at) (e *Error) {
		s.Status, e = readStr(r, a, true)
		if e == nil && !knownStatus(s.Status) {
			e = invalid("status", "unknown status %s", Clip(s.Status))
		}
		return e
	}},
	{key: "planner", read: strF(func(s *Status) *string { return &s.Planner }, false, MaxIDLen)},
	{key: "steps_done", read: intF(func(s *Status) *int64 { return &s.StepsDone }, false, 0, 0, "")},
	{key: "steps", read: intF(func(s *Status) *int64 { return &s.Steps }, false, 0, 0, "")},
	{key: "result", read: func(r Reader, s *Status, a at) (e *Error) {
		s.Result, e = readMap(r, a)
		return e
	}},
	{key: "errors", read: func(r Reader, s *Status, a at) *Error {
		var x Response
		e := readErrorMap(r, &x, a)
		s.Errors = x.Errors
		return e
	}},
	{key: "error", read: func(r Reader, s *Status, a at) (e *Error) {
		s.Error, e = readOptError(r, a.key)
		return e
	}},
}

// knownStatus reports whether s is one of the states of a durable request.
func knownStatus(s string) bool {
	switch s {
	case StatusAccepted, StatusRunning, StatusDone, StatusFailed, StatusCancelled, StatusUnknown:
		return true
	}
	return false
}
