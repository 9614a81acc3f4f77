package dnsbench

import (
	"os"
	"slices"
	"strconv"
)

// Median of the rounds' figures (the DNS and HTTP load benchmarks report
// it, so one noisy round does not decide).
func Median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// Met is how a benchmark log says whether a goal was reached.
func Met(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT MET"
}

// EnvInt is a positive integer from the environment, else def.
func EnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
