package cmcd

import (
	"bufio"
	"errors"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// QueryParam is the query argument that carries CMCD in query mode.
const QueryParam = "CMCD"

// Event bodies: more lines than CML or the players ever batch is abuse, and
// each kept Report or LineError costs memory, so both are capped.
const (
	MaxEventLines = 1000 // reports plus bad lines per body
	maxLineErrors = 100  // bad lines reported in detail per body
)

// ParseQuery decodes the single CMCD argument of a raw (still escaped) URL
// query. Other arguments are ignored without being decoded, so a malformed
// unrelated argument cannot reject the report.
func ParseQuery(rawQuery string) (Report, error) {
	var (
		raw   string
		found bool
	)
	for rest := rawQuery; rest != ""; {
		var arg string
		arg, rest, _ = strings.Cut(rest, "&")
		name, val, _ := strings.Cut(arg, "=")
		if name != QueryParam {
			continue
		}
		if found {
			return Report{}, &Error{Key: QueryParam, Reason: "query argument appears more than once"}
		}
		raw, found = val, true
	}
	if !found {
		return Report{}, &Error{Key: QueryParam, Reason: "no CMCD query argument"}
	}
	// Percent-encoding at most triples the size; check before decoding so a
	// huge argument is not copied first.
	if len(raw) > 3*MaxLineBytes {
		return Report{}, &Error{Key: QueryParam, Reason: "query argument longer than " + strconv.Itoa(3*MaxLineBytes) + " bytes"}
	}
	dict, err := url.QueryUnescape(raw)
	if err != nil {
		return Report{}, &Error{Key: QueryParam, Reason: "bad percent-encoding"}
	}
	return Parse(dict)
}

// ParseHeaders merges the CMCD-Object, CMCD-Request, CMCD-Session and
// CMCD-Status headers into one Report. Which shard a key arrives in is not
// checked (players disagree, and dash.js lets users remap them); a key sent
// in two shards is an error, because the two values could disagree.
func ParseHeaders(h http.Header) (Report, error) {
	var (
		all  []member
		seen bool
	)
	for _, name := range [...]string{"CMCD-Object", "CMCD-Request", "CMCD-Session", "CMCD-Status"} {
		lines := h.Values(name)
		if len(lines) == 0 {
			continue
		}
		seen = true
		// RFC 9110 5.3: repeated field lines are one comma-joined value.
		joined := lines[0]
		if len(lines) > 1 {
			joined = strings.Join(lines, ",")
		}
		members, err := parseDict(joined)
		if err != nil {
			var e *Error
			if errors.As(err, &e) && e.Key == "" {
				e.Key = name // whole-shard problems name the header
			}
			return Report{}, err
		}
		if len(all)+len(members) > MaxMembers {
			return Report{}, &Error{Key: name, Reason: "more than " + strconv.Itoa(MaxMembers) + " members across CMCD headers"}
		}
		for _, m := range members {
			for _, prev := range all {
				if prev.key == m.key {
					return Report{}, &Error{Key: m.key, Reason: "sent in more than one CMCD header"}
				}
			}
		}
		all = append(all, members...)
	}
	if !seen {
		return Report{}, &Error{Key: "CMCD-*", Reason: "no CMCD headers"}
	}
	return fromMembers(all)
}

// LineError is one rejected line of an event body. Line is 1-based.
type LineError struct {
	Line int
	Err  error
}

func (e LineError) Error() string {
	return "line " + strconv.Itoa(e.Line) + ": " + e.Err.Error()
}

func (e LineError) Unwrap() error { return e.Err }

// ParseEventBody decodes a CMCD v2 event-mode body (Content-Type
// application/cmcd): one report per line, blank lines skipped. It reads at
// most limit bytes (a limit below 1 reads nothing). A bad line is reported and skipped, so one corrupt event
// does not drop its batch; the caller checks the content type and status.
func ParseEventBody(r io.Reader, limit int64) ([]Report, []LineError) {
	var (
		reports      []Report
		errs         []LineError
		dropped      int // bad lines beyond maxLineErrors
		firstDropped int
	)
	n := limit
	if n < math.MaxInt64 {
		n++ // one byte more tells "exactly limit" from "more"
	}
	lr := &io.LimitedReader{R: r, N: n}
	br := bufio.NewReaderSize(lr, MaxLineBytes+2)
	fail := func(line int, err error) {
		if len(errs) < maxLineErrors {
			errs = append(errs, LineError{Line: line, Err: err})
		} else {
			if dropped == 0 {
				firstDropped = line
			}
			dropped++
		}
	}
	var consumed int64
	for line := 1; ; line++ {
		text, size, tooLong, err := readLine(br)
		consumed += int64(size)
		if consumed > limit {
			fail(line, &Error{Reason: "body longer than " + strconv.FormatInt(limit, 10) + " bytes"})
			break
		}
		if tooLong {
			fail(line, &Error{Reason: "line longer than " + strconv.Itoa(MaxLineBytes) + " bytes"})
		} else if s := strings.TrimRight(string(text), "\r\n"); strings.Trim(s, " \t") != "" {
			if len(reports)+len(errs)+dropped >= MaxEventLines {
				fail(line, &Error{Reason: "more than " + strconv.Itoa(MaxEventLines) + " lines"})
				break
			}
			rep, perr := Parse(s)
			if perr != nil {
				fail(line, perr)
			} else {
				reports = append(reports, rep)
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				fail(line, &Error{Reason: "read body: " + err.Error()})
			}
			break
		}
	}
	if dropped > 0 {
		errs = append(errs, LineError{Line: firstDropped, Err: &Error{Reason: "this and " + strconv.Itoa(dropped-1) + " later bad lines not listed"}})
	}
	return reports, errs
}

// readLine returns the next line including its newline, and its length in
// bytes. A line longer than the reader's buffer is consumed to its end and
// reported as tooLong without its text, so one huge line is never buffered;
// n still counts all of it against the body limit.
func readLine(br *bufio.Reader) (text []byte, n int, tooLong bool, err error) {
	text, err = br.ReadSlice('\n')
	if !errors.Is(err, bufio.ErrBufferFull) {
		return text, len(text), false, err
	}
	n = len(text)
	for errors.Is(err, bufio.ErrBufferFull) {
		var more []byte
		more, err = br.ReadSlice('\n')
		n += len(more)
	}
	return nil, n, true, err
}
