package bench

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// checkChartFormat refuses a chart format WriteCharts cannot write (the
// command line checks --chart-format with it before the run).
func checkChartFormat(ext string) error {
	if ext != "svg" && ext != "png" {
		return errors.New("want svg or png")
	}
	return nil
}

// WriteCharts draws the report into dir and returns the files written:
// throughput by record size (records/s and MB/s, one line per system,
// setting and consumer) and latency percentiles (one bar group per row that
// measured latency). ext is "svg" or "png".
func (r *Report) WriteCharts(dir, ext string) ([]string, error) {
	if err := checkChartFormat(ext); err != nil {
		return nil, fmt.Errorf("bench: chart format %q: %w", ext, err)
	}
	var files []string
	for _, unit := range []string{"records", "mb"} {
		p, err := r.throughputChart(unit)
		if err != nil {
			return files, err
		}
		name := filepath.Join(dir, string(r.Workload.Kind)+"-throughput-"+unit+"."+ext)
		if err := p.Save(8*vg.Inch, 5*vg.Inch, name); err != nil {
			return files, err
		}
		files = append(files, name)
	}
	p, ok, err := r.latencyChart()
	if err != nil {
		return files, err
	}
	if ok {
		name := filepath.Join(dir, string(r.Workload.Kind)+"-latency."+ext)
		if err := p.Save(8*vg.Inch, 5*vg.Inch, name); err != nil {
			return files, err
		}
		files = append(files, name)
	}
	return files, nil
}

func rowName(res Result) string {
	name := res.System + " " + res.Setting
	if res.Consumer != "" {
		name += " " + res.Consumer
	}
	return name
}

// seriesOrder lists row names in first-seen order.
func (r *Report) seriesOrder() []string {
	var names []string
	seen := map[string]bool{}
	for _, res := range r.Results {
		if name := rowName(res); !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	return names
}

func (r *Report) throughputChart(unit string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s throughput by record size (%d brokers, replicas %d)", r.Workload.Kind, r.Workload.Brokers, r.Workload.Replicas)
	p.X.Label.Text = "record size (bytes)"
	p.Y.Label.Text = "records/s"
	if unit == "mb" {
		p.Y.Label.Text = "MB/s"
	}
	labels := make([]string, len(r.Sizes))
	for i, size := range r.Sizes {
		labels[i] = strconv.Itoa(size)
	}
	p.NominalX(labels...)
	p.Legend.Top = true
	for i, name := range r.seriesOrder() {
		var points plotter.XYs
		for _, res := range r.Results {
			if rowName(res) != name {
				continue
			}
			for x, size := range r.Sizes {
				if size == res.RecordSize {
					y := res.RecordsPerSec
					if unit == "mb" {
						y = res.MBPerSec
					}
					points = append(points, plotter.XY{X: float64(x), Y: y})
				}
			}
		}
		line, dots, err := plotter.NewLinePoints(points)
		if err != nil {
			return nil, err
		}
		line.Color = plotutil.Color(i)
		dots.Color = plotutil.Color(i)
		dots.Shape = plotutil.Shape(i)
		p.Add(line, dots)
		p.Legend.Add(name, line, dots)
	}
	p.X.Min, p.X.Max = -0.5, float64(len(r.Sizes))-0.5
	p.Y.Min = 0
	p.Y.Max *= 1.25 // room for the legend
	return p, nil
}

func (r *Report) latencyChart() (*plot.Plot, bool, error) {
	var rows []Result
	for _, res := range r.Results {
		if res.LatencyMeasures != "" && res.Latency.Count > 0 {
			rows = append(rows, res)
		}
	}
	if len(rows) == 0 {
		return nil, false, nil
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s latency (%s)", r.Workload.Kind, rows[0].LatencyMeasures)
	p.Y.Label.Text = "milliseconds"
	p.Legend.Top = true
	names := make([]string, len(rows))
	for i, res := range rows {
		names[i] = fmt.Sprintf("%s\n%d B", rowName(res), res.RecordSize)
	}
	p.NominalX(names...)
	percentiles := []struct {
		name  string
		value func(LatencySummary) float64
	}{
		{"p50", func(l LatencySummary) float64 { return l.P50 }},
		{"p99", func(l LatencySummary) float64 { return l.P99 }},
		{"p99.9", func(l LatencySummary) float64 { return l.P999 }},
	}
	width := vg.Points(12)
	for i, pct := range percentiles {
		values := make(plotter.Values, len(rows))
		for j, res := range rows {
			values[j] = pct.value(res.Latency)
		}
		bars, err := plotter.NewBarChart(values, width)
		if err != nil {
			return nil, false, err
		}
		bars.Color = plotutil.Color(i)
		bars.LineStyle.Width = 0
		bars.Offset = vg.Length(i-1) * width
		p.Add(bars)
		p.Legend.Add(pct.name, bars)
	}
	p.X.Min, p.X.Max = -0.75, float64(len(rows))-0.25
	p.Y.Min = 0
	p.Y.Max *= 1.25 // room for the legend
	return p, true, nil
}
