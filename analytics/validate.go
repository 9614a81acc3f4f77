package analytics

// Validate checks a series query the way Series will, so an API can tell
// a bad request (400, naming the field) from a store that failed (503).
// The error starts with the name of the field to blame.
func (q SeriesQuery) Validate() error { return q.validate() }
