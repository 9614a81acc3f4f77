package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGenerateMedia: one encode gives an HLS multivariant playlist and a
// DASH MPD over the same 2 s fMP4 segments, and a second call hits the cache.
func TestGenerateMedia(t *testing.T) {
	requireTool(t, "ffmpeg")
	m, err := GenerateMedia(t.Context(), DefaultMedia)
	if err != nil {
		t.Fatal(err)
	}
	master, err := os.ReadFile(filepath.Join(m.Dir, m.HLS))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(master), "#EXT-X-STREAM-INF:"); n != len(DefaultMedia.Renditions) {
		t.Errorf("master playlist has %d variants, want %d:\n%s", n, len(DefaultMedia.Renditions), master)
	}
	mpd, err := os.ReadFile(filepath.Join(m.Dir, m.DASH))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mpd), "<SegmentTemplate") || !strings.Contains(string(mpd), `duration="2000000"`) {
		t.Errorf("MPD lacks 2 s SegmentTemplate segments:\n%s", mpd)
	}
	segs, _ := filepath.Glob(filepath.Join(m.Dir, "seg-0-*.m4s"))
	if len(segs) != 18 {
		t.Errorf("%d segments of rendition 0, want 18 (36 s / 2 s)", len(segs))
	}
	again, err := GenerateMedia(t.Context(), DefaultMedia)
	if err != nil || again != m {
		t.Errorf("second call: %+v, %v; want the cached %+v", again, err, m)
	}
}
