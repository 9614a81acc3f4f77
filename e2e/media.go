// Package e2e is cdnpilot's browser end-to-end harness: test media made by
// ffmpeg, throttled "CDN" servers, and real players (hls.js, dash.js) in
// Debian's chromium driven by playwright-core (js/play.mjs).
package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Rendition is one video rung of the test ladder.
type Rendition struct {
	Width, Height int
	KbpsVideo     int
}

// MediaSpec describes the test asset. The zero value is not useful; start
// from DefaultMedia.
type MediaSpec struct {
	Duration   time.Duration
	Segment    time.Duration // segment length and keyframe interval
	Renditions []Rendition
	KbpsAudio  int
}

// DefaultMedia is 36 s of testsrc2 and a sine tone in two renditions with 2 s
// segments: long enough to watch a steering change or a failover, short
// enough to encode in a few seconds on two cores.
var DefaultMedia = MediaSpec{
	Duration:   36 * time.Second,
	Segment:    2 * time.Second,
	Renditions: []Rendition{{Width: 384, Height: 216, KbpsVideo: 300}, {Width: 640, Height: 360, KbpsVideo: 700}},
	KbpsAudio:  64,
}

// Media is a generated asset: one encode, packaged as both HLS (fMP4) and
// DASH (SegmentTemplate), sharing the same segment files.
type Media struct {
	Dir  string // holds everything below
	HLS  string // multivariant playlist, relative to Dir
	DASH string // MPD, relative to Dir
	// LadderMinBPS is the lowest rung's advertised bandwidth, for the
	// steering URI's ladder_min.
	LadderMinBPS int64
}

// Names of the files in Media.Dir.
const (
	HLSMaster    = "master.m3u8"
	DASHManifest = "manifest.mpd"
)

// ErrNoFFmpeg means ffmpeg is not installed.
var ErrNoFFmpeg = errors.New("ffmpeg not found in PATH (apt-get install ffmpeg)")

// args is the whole ffmpeg command line after the binary; it is also the
// cache key, so any change to the encode re-encodes.
func (s MediaSpec) args(out string) []string {
	dur := strconv.FormatFloat(s.Duration.Seconds(), 'f', -1, 64)
	top := s.Renditions[len(s.Renditions)-1]
	// Fixed GOP, no scene cut: every segment starts with a keyframe at the
	// same time in every rendition, so players can switch at any boundary.
	fps := 30
	gop := strconv.Itoa(int(s.Segment.Seconds() * float64(fps)))
	a := []string{
		"-hide_banner", "-loglevel", "error", "-nostdin", "-y",
		"-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=%dx%d:rate=%d:duration=%s", top.Width, top.Height, fps, dur),
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=" + dur,
	}
	var fc strings.Builder
	fmt.Fprintf(&fc, "[0:v]split=%d", len(s.Renditions))
	for i := range s.Renditions {
		fmt.Fprintf(&fc, "[s%d]", i)
	}
	for i, r := range s.Renditions {
		fmt.Fprintf(&fc, ";[s%d]scale=%d:%d,setsar=1[v%d]", i, r.Width, r.Height, i)
	}
	a = append(a, "-filter_complex", fc.String())
	for i := range s.Renditions {
		a = append(a, "-map", fmt.Sprintf("[v%d]", i))
	}
	a = append(a, "-map", "1:a",
		"-c:v", "libx264", "-preset", "ultrafast", "-profile:v", "main", "-pix_fmt", "yuv420p",
		"-r", strconv.Itoa(fps), "-g", gop, "-keyint_min", gop, "-sc_threshold", "0",
		"-x264-params", "scenecut=0:open_gop=0")
	for i, r := range s.Renditions {
		k := r.KbpsVideo
		a = append(a,
			fmt.Sprintf("-b:v:%d", i), fmt.Sprintf("%dk", k),
			fmt.Sprintf("-maxrate:v:%d", i), fmt.Sprintf("%dk", k*11/10),
			fmt.Sprintf("-bufsize:v:%d", i), fmt.Sprintf("%dk", k*2))
	}
	a = append(a, "-c:a", "aac", "-b:a", fmt.Sprintf("%dk", s.KbpsAudio), "-ac", "2",
		// The dash muxer writes the MPD and, with hls_playlist, HLS
		// playlists over the same fMP4 segments: one encode, two formats.
		"-f", "dash", "-seg_duration", strconv.FormatFloat(s.Segment.Seconds(), 'f', -1, 64),
		"-use_template", "1", "-use_timeline", "0",
		"-adaptation_sets", "id=0,streams=v id=1,streams=a",
		"-init_seg_name", "init-$RepresentationID$.m4s",
		"-media_seg_name", "seg-$RepresentationID$-$Number%05d$.m4s",
		"-hls_playlist", "1", "-hls_master_name", HLSMaster,
		filepath.Join(out, DASHManifest))
	return a
}

// GenerateMedia encodes spec with ffmpeg, or returns the cached result of an
// earlier run with the same command line (under os.TempDir, shared by test
// processes: it is built in a scratch directory and renamed into place).
func GenerateMedia(ctx context.Context, spec MediaSpec) (Media, error) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		return Media{}, ErrNoFFmpeg
	}
	if len(spec.Renditions) == 0 || spec.Duration <= 0 || spec.Segment <= 0 {
		return Media{}, errors.New("media spec: need renditions, a duration and a segment length")
	}
	ver, err := exec.CommandContext(ctx, ffmpeg, "-version").Output()
	if err != nil {
		return Media{}, fmt.Errorf("ffmpeg -version: %w", err)
	}
	h := sha256.New()
	h.Write(bytes.SplitN(ver, []byte("\n"), 2)[0])
	for _, a := range spec.args("OUT") {
		h.Write([]byte(a))
		h.Write([]byte{0})
	}
	m := Media{
		Dir:  filepath.Join(os.TempDir(), "cdnpilot-e2e-media-"+hex.EncodeToString(h.Sum(nil))[:16]),
		HLS:  HLSMaster,
		DASH: DASHManifest,
		// What the MPD and master playlist advertise for the lowest rung
		// is video plus audio; the steering server only compares orders
		// of magnitude with it.
		LadderMinBPS: int64(spec.Renditions[0].KbpsVideo+spec.KbpsAudio) * 1000,
	}
	if complete(m) {
		return m, nil
	}
	tmp, err := os.MkdirTemp(os.TempDir(), "cdnpilot-e2e-encode-")
	if err != nil {
		return Media{}, fmt.Errorf("media scratch dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, ffmpeg, spec.args(tmp)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return Media{}, fmt.Errorf("ffmpeg: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return Media{}, fmt.Errorf("media dir: %w", err)
	}
	if err := os.Rename(tmp, m.Dir); err != nil && !complete(m) {
		return Media{}, fmt.Errorf("media dir: %w", err)
	}
	if !complete(m) {
		return Media{}, fmt.Errorf("ffmpeg wrote no %s or %s in %s", HLSMaster, DASHManifest, m.Dir)
	}
	return m, nil
}

// complete reports whether both manifests exist: they are written last, and
// the directory only appears by rename once the encode finished.
func complete(m Media) bool {
	for _, f := range []string{m.HLS, m.DASH} {
		if _, err := os.Stat(filepath.Join(m.Dir, f)); errors.Is(err, fs.ErrNotExist) || err != nil {
			return false
		}
	}
	return true
}
