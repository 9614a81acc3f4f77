package syncbuf

import (
	"strings"
	"sync"
	"testing"
)

// TestConcurrent writes from many goroutines while reading; under -race
// an unlocked buffer fails here.
func TestConcurrent(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				_, _ = b.WriteString("x")
				_, _ = b.Write([]byte("y"))
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	got := b.String()
	if len(got) != 1600 || strings.Count(got, "x") != 800 {
		t.Fatalf("got %d bytes, %d x; want 1600 and 800", len(got), strings.Count(got, "x"))
	}
}
