package sim

import (
	"errors"
	"fmt"
	"image/color"
	"os"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// PlotWindow is the trailing window the plotted shares are taken over:
// a few new views a second are too few for per-step shares.
const PlotWindow = 30 * time.Second

// PlotShares writes a PNG of each CDN's share of new views in the metrics
// scope over time (trailing PlotWindow), with the incident shaded, titled
// with the scenario and the policy.
func PlotShares(r *Result, path string) error {
	if len(r.Steps) == 0 {
		return errors.New("plot shares: the result has no steps (an endless run)")
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: %s, share of new views in %s", r.Scenario, r.Policy, r.Scope)
	p.X.Label.Text = "minutes"
	p.Y.Label.Text = "share of new views"
	// Headroom above 100% keeps the legend off the lines.
	p.Y.Min, p.Y.Max = 0, 1.3
	p.Legend.Top = true
	if inc := r.Incident; inc != nil {
		x0, x1 := inc.Start.Minutes(), inc.End.Minutes()
		band, err := plotter.NewPolygon(plotter.XYs{{X: x0, Y: 0}, {X: x1, Y: 0}, {X: x1, Y: 1}, {X: x0, Y: 1}})
		if err != nil {
			return fmt.Errorf("plot shares: %w", err)
		}
		band.Color = color.NRGBA{R: 220, G: 40, B: 40, A: 45}
		band.LineStyle.Color = color.Transparent
		p.Add(band)
		p.Legend.Add("incident: "+inc.Name, band)
	}
	w := stepsOf(PlotWindow, r.Step)
	for c, name := range r.CDNs {
		var pts plotter.XYs
		for i := range r.Steps {
			var n, on int
			for j := max(0, i-w+1); j <= i; j++ {
				n += sum(r.Steps[j].Scope)
				on += r.Steps[j].Scope[c]
			}
			if n == 0 {
				continue
			}
			at := r.Steps[i].At + r.Step
			pts = append(pts, plotter.XY{X: at.Minutes(), Y: float64(on) / float64(n)})
		}
		if len(pts) == 0 {
			continue
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return fmt.Errorf("plot shares: %w", err)
		}
		l.Color = plotutil.Color(c)
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(name, l)
	}
	wt, err := p.WriterTo(10*vg.Inch, 5*vg.Inch, "png")
	if err != nil {
		return fmt.Errorf("plot shares: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("plot shares: %w", err)
	}
	if _, err := wt.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("plot shares: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("plot shares: %w", err)
	}
	return nil
}
