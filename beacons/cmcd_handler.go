package beacons

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/cdnpilot/cdnpilot/beacons/cmcd"
	"github.com/cdnpilot/cdnpilot/beacons/record"
)

// ServeCMCD handles /v1/cmcd:
//   - POST with Content-Type application/cmcd: CMCD v2 event reports, one
//     CMCD line per report (players batch several);
//   - GET or POST with a CMCD= query argument or CMCD-* headers: one
//     request-mode report (CDN log forwarders, proxies).
//
// The CMCD target URL carries what CMCD has no key for: ?service=vod (and
// ?cdn=cdn-a for v1 players, whose reports have no cdn key).
//
// Players re-send event reports after 429 and 5xx, so the event id of a
// report with a sequence number is derived from (sid, sn, e): a re-sent
// report is the same beacon downstream, not a second one.
func (h *Handler) ServeCMCD(w http.ResponseWriter, r *http.Request) {
	if h.preflight(w, r, "GET, POST, OPTIONS") {
		return
	}
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		h.fail(w, http.StatusMethodNotAllowed, reasonMethod, "use GET or POST", "Allow", "GET, POST, OPTIONS")
		return
	}
	client, ok := h.admit(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	service, cdnParam := q.Get("service"), q.Get("cdn")

	var (
		reports []cmcd.Report
		lineOf  []int // body line of each report, in event mode
		res     Result
	)
	mt := mediaType(r)
	switch {
	case r.Method == http.MethodPost && mt == "application/cmcd":
		bp, body, ok := h.readBody(w, r)
		if !ok {
			return
		}
		defer h.bufs.Put(bp)
		var lineErrs []cmcd.LineError
		reports, lineErrs = cmcd.ParseEventBody(bytes.NewReader(body), h.o.MaxBodyBytes)
		for _, le := range lineErrs {
			// Lines count from 1 in LineError; indexes in answers from 0.
			res.Rejected = append(res.Rejected, FieldError{Index: le.Line - 1, Field: keyOf(le.Err), Reason: le.Err.Error()})
		}
		lineOf = reportLines(body, lineErrs, len(reports))
	case r.Method == http.MethodPost && mt != "" && mt != "text/plain":
		h.fail(w, http.StatusUnsupportedMediaType, reasonMediaType,
			fmt.Sprintf("content type %q: event reports are application/cmcd; request mode uses the CMCD= query or CMCD-* headers", mt))
		return
	default:
		var (
			rep cmcd.Report
			err error
		)
		if strings.Contains(r.URL.RawQuery, cmcd.QueryParam+"=") {
			rep, err = cmcd.ParseQuery(r.URL.RawQuery)
		} else {
			rep, err = cmcd.ParseHeaders(r.Header)
		}
		if err != nil {
			h.fail(w, http.StatusBadRequest, reasonNotJSON, "CMCD: "+err.Error())
			return
		}
		reports = []cmcd.Report{rep}
	}

	now := h.now()
	loc := h.locate(client)
	batch := make([]record.Beacon, 0, len(reports))
	index := make([]int, 0, len(reports))
	seen := make(map[string]bool, len(reports))
	for i, rep := range reports {
		if lineOf != nil {
			i = lineOf[i]
		}
		b, err := rep.Beacon()
		if err != nil {
			res.Rejected = append(res.Rejected, FieldError{Index: i, Field: keyOf(err), Reason: err.Error()})
			continue
		}
		b.Service = service
		if b.CDN == "" {
			b.CDN = cdnParam
		}
		if b.TS == 0 {
			// Request mode carries no timestamp: the receive time is the
			// best estimate of when the request was made.
			b.TS = now.UnixMilli()
		}
		if fe := validateCMCD(&b, now, h.o.MaxClockSkew); fe != nil {
			res.Rejected = append(res.Rejected, FieldError{Index: i, Field: fe.field, Reason: fe.reason})
			continue
		}
		if rep.SN != nil {
			b.EventID = cmcd.EventID(rep.SID, b.Seq, rep.E)
			if seen[b.EventID] {
				h.rejected.WithLabelValues(reasonDuplicate).Inc()
				continue
			}
			seen[b.EventID] = true
		}
		b.Source = record.SourceCMCD
		h.enrich(&b, now, client, loc)
		batch = append(batch, b)
		index = append(index, i)
	}
	h.publishAndAnswer(w, r, batch, index, res, "cmcd")
}

// validateCMCD applies the beacon schema's rules to what CMCD mapped, so
// both paths put the same guarantees on the topic.
func validateCMCD(b *record.Beacon, now time.Time, skew time.Duration) *fieldErr {
	if err := checkName("service", b.Service, 32, true); err != nil {
		err.reason += " (add ?service= to the CMCD target URL)"
		return err
	}
	if err := checkName("cdn", b.CDN, 64, true); err != nil {
		if b.CDN == "" {
			err.reason += " (send the cdn key, or add ?cdn= to the CMCD target URL)"
		}
		return err
	}
	if err := checkID("view_id", b.ViewID, true); err != nil {
		err.field = "sid"
		return err
	}
	if d := b.TS - now.UnixMilli(); d > skew.Milliseconds() || -d > skew.Milliseconds() {
		return &fieldErr{"ts", "too far from the server clock"}
	}
	if err := checkHost(b.Host); err != nil {
		err.field = "h"
		return err
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"cid", b.ContentID, 128}, {"ec", b.ErrorCode, 64}} {
		if err := checkText(f.name, f.v, f.max); err != nil {
			return err
		}
	}
	if err := checkRecordLimits(b); err != nil {
		// Name the CMCD key the value came from, and the beacon field.
		if key, ok := cmcdKeyOf[err.field]; ok {
			err.reason = key + " → " + err.field + ": " + err.reason
			err.field = key
		}
		return err
	}
	return nil
}

// reportLines returns the 0-based body line of each report ParseEventBody
// returned, so that report-level rejections are indexed by line like the
// line errors are (not by position among the parsed reports, which
// collides with the line index of an earlier bad line). Reports are the
// non-blank lines without a LineError, in order; only when bad lines went
// unlisted (past cmcd's detail cap or its line cap) is a line parsed again
// to tell a report from a bad line. It returns nil if the two disagree.
func reportLines(body []byte, lineErrs []cmcd.LineError, n int) []int {
	bad := make(map[int]bool, len(lineErrs))
	for _, le := range lineErrs {
		bad[le.Line-1] = true
	}
	lines := bytes.Split(body, []byte("\n"))
	var cand []int
	for i, l := range lines {
		if !bad[i] && len(bytes.Trim(bytes.TrimRight(l, "\r\n"), " \t")) > 0 {
			cand = append(cand, i)
		}
	}
	if len(cand) == n {
		return cand
	}
	out := make([]int, 0, n)
	for _, i := range cand {
		if len(out) == n {
			break
		}
		if _, err := cmcd.Parse(string(bytes.TrimRight(lines[i], "\r\n"))); err == nil {
			out = append(out, i)
		}
	}
	if len(out) != n {
		return nil
	}
	return out
}

// cmcdKeyOf names the CMCD key each limited beacon field is mapped from
// (see docs/CMCD.md).
var cmcdKeyOf = map[string]string{
	"startup_ms": "msd", "rebuffer_ms": "bsd", "bitrate_kbps": "br", "throughput_kbps": "mtp",
	"ttfb_ms": "ttfb", "dropped_frames": "dfa",
}

func keyOf(err error) string {
	var ce *cmcd.Error
	if errors.As(err, &ce) && ce.Key != "" {
		return ce.Key
	}
	return "(report)"
}
