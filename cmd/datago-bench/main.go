// Command datago-bench runs the Go pipeline over a folder of images, with no Python involved, and
// prints images/s, MB/s read and the bucket histogram.
//
//	datago-bench -root /data/photos -size 512 -limit 1000
//	datago-bench -root /data/photos -seed 1 -batch 32   # ordered delivery, batches
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"time"

	"github.com/datago-dev/datago/go/config"
	"github.com/datago-dev/datago/go/pipeline"
)

func main() {
	root := flag.String("root", "", "folder of images (required)")
	size := flag.Int("size", 512, "default_image_size: bucket area ≈ size² pixels")
	ratio := flag.Int("ratio", 16, "downsampling_ratio: bucket sides are multiples of it")
	minAR := flag.Float64("min-ar", 0.5, "min_aspect_ratio")
	maxAR := flag.Float64("max-ar", 2.0, "max_aspect_ratio")
	crop := flag.Bool("crop", true, "crop_and_resize into aspect-ratio buckets")
	workers := flag.Int("workers", runtime.GOMAXPROCS(0), "decode/transform workers (num_threads)")
	fetchers := flag.Int("fetchers", 0, "fetch workers (max_connections; 0: 2 x workers)")
	limit := flag.Int("limit", 0, "stop after this many samples (0: all)")
	encode := flag.String("encode", "", "re-encode the output: png or jpeg (empty: raw pixels)")
	rgb8 := flag.Bool("rgb8", false, "image_to_rgb8")
	random := flag.Bool("random", false, "random_sampling")
	cpuProfile := flag.String("cpuprofile", "", "write a Go CPU profile (pprof) to this file")
	seed := flag.Int64("seed", -1, "seed: ordered delivery, a function of (seed, epoch, rank, world_size) (-1: unordered, fastest first)")
	batch := flag.Int("batch", 0, "batch_size: deliver batches of one bucket (0: samples)")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		defer pprof.StopCPUProfile()
	}
	if *root == "" {
		flag.Usage()
		os.Exit(2)
	}
	cfg := map[string]any{
		"source_type":   "file",
		"source_config": map[string]any{"root_path": *root, "random_sampling": *random},
		"image_config": map[string]any{
			"crop_and_resize": *crop, "default_image_size": *size, "downsampling_ratio": *ratio,
			"min_aspect_ratio": *minAR, "max_aspect_ratio": *maxAR, "image_to_rgb8": *rgb8,
			"pre_encode_images": *encode != "", "encode_format": *encode,
		},
		"limit": *limit, "num_threads": *workers, "max_connections": *fetchers,
	}
	if *seed >= 0 {
		cfg["seed"] = *seed
	}
	if *batch > 0 {
		cfg["batch_size"] = *batch
	}
	raw, _ := json.Marshal(cfg)
	c, err := config.Parse(raw)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	p, err := pipeline.New(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	hist := map[string]int{}
	start := time.Now()
	n := 0
	for *batch == 0 {
		s, status, err := p.Next(-1)
		if status == pipeline.StatusError {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if status != pipeline.StatusSample {
			break
		}
		w, h := s.ImageSize()
		hist[fmt.Sprintf("%dx%d", w, h)]++
		s.Free()
		n++
	}
	for *batch > 0 {
		b, status, err := p.NextBatch(-1)
		if status == pipeline.StatusError {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if status != pipeline.StatusSample {
			break
		}
		w, h, _ := b.Size()
		hist[fmt.Sprintf("%dx%d", w, h)] += b.Len()
		n += b.Len()
		b.Free()
	}
	elapsed := time.Since(start).Seconds()
	st := p.Stats()
	p.Stop()
	mode := "unordered"
	if *seed >= 0 {
		mode = fmt.Sprintf("ordered (seed %d)", *seed)
	}
	if *batch > 0 {
		mode += fmt.Sprintf(", batches of %d (%d partial at the end, %d flushed)", *batch, st.PartialBatchesAtEnd, st.PartialBatchesFlushed)
	}
	fmt.Printf("samples: %d in %.2f s: %.1f images/s, %.1f MB/s read (%d workers, %s)\n",
		n, elapsed, float64(n)/elapsed, float64(st.BytesRead)/1e6/elapsed, *workers, mode)
	fmt.Printf("skipped: %d %v\n", st.SamplesSkipped, st.SkippedReasons)
	for _, s := range st.Stages {
		fmt.Printf("stage %-8s in %6d out %6d busy %7.2f s\n", s.Name, s.ItemsIn, s.ItemsOut, s.BusySeconds)
	}
	keys := make([]string, 0, len(hist))
	for k := range hist {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return hist[keys[i]] > hist[keys[j]] })
	fmt.Println("bucket histogram (W x H: count):")
	for _, k := range keys {
		fmt.Printf("  %-10s %6d\n", k, hist[k])
	}
}
