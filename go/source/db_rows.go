package source

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/url"
	"strconv"
	"strings"

	"github.com/datago-dev/datago/go/errs"
)

// dbLatent is an entry of a row's latents.
type dbLatent struct {
	LatentType    string  `json:"latent_type"`
	FileDirectURL *string `json:"file_direct_url"`
	IsMask        bool    `json:"is_mask"`
}

// dbRow is one result of a page; every field may be null or absent.
type dbRow struct {
	ID             json.RawMessage `json:"id"`
	Source         *string         `json:"source"`
	Attributes     json.RawMessage `json:"attributes"`
	ImageDirectURL *string         `json:"image_direct_url"`
	Latents        []dbLatent      `json:"latents"`
	Tags           dbTags          `json:"tags"`
	CocaEmbedding  *struct {
		Vector []float32 `json:"vector"`
	} `json:"coca_embedding"`
	DuplicateState *json.Number `json:"duplicate_state"`
}

// item maps one row to an Item, or skips it (nil).
func (d *DB) item(page *url.URL, raw json.RawMessage) *Item {
	var r dbRow
	if err := json.Unmarshal(raw, &r); err != nil {
		d.skip(errs.ReasonBadRecord, rowID(raw), page.String(), err.Error())
		return nil
	}
	id := idText(r.ID)
	if id == "" {
		d.skip(errs.ReasonBadRecord, "", page.String(), "no id")
		return nil
	}
	it := &Item{ID: id}
	if r.Source != nil {
		it.Source = *r.Source
	}
	if a := bytes.TrimSpace(r.Attributes); len(a) > 0 && string(a) != "null" {
		if a[0] == '{' {
			var buf bytes.Buffer
			if err := json.Compact(&buf, a); err == nil {
				it.AttributesJSON = buf.String()
			}
		} else {
			slog.Debug("datago: db source: attributes is not a JSON object, ignored", "id", id)
		}
	}
	if len(r.Tags) > 0 {
		it.Tags = r.Tags
	}
	if r.CocaEmbedding != nil && len(r.CocaEmbedding.Vector) > 0 {
		it.Embedding = r.CocaEmbedding.Vector
	}
	if r.DuplicateState != nil {
		it.DuplicateState = numberToInt(*r.DuplicateState)
	}
	// resolve makes a payload of a row's URL: a file under a local root is read from disk
	resolve := func(ref string) (*Payload, bool) {
		u, err := page.Parse(strings.TrimSpace(ref))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, false
		}
		path, err := d.localPath(u)
		if err != nil {
			return nil, false
		}
		if path != "" {
			return &Payload{Path: path}, true
		}
		return &Payload{URL: u.String()}, true
	}
	if d.requireImages {
		if r.ImageDirectURL == nil || strings.TrimSpace(*r.ImageDirectURL) == "" {
			d.skip(errs.ReasonNoImage, id, page.String(), "no image_direct_url")
			return nil
		}
		p, ok := resolve(*r.ImageDirectURL)
		if !ok {
			d.skip(errs.ReasonBadRecord, id, page.String(), "invalid image_direct_url "+strconv.Quote(*r.ImageDirectURL))
			return nil
		}
		it.Image = p
	}
	for _, l := range r.Latents {
		if l.FileDirectURL == nil || strings.TrimSpace(*l.FileDirectURL) == "" {
			d.skip(errs.ReasonBadRecord, id, page.String(), "latent "+strconv.Quote(l.LatentType)+" has no file_direct_url")
			return nil
		}
		p, ok := resolve(*l.FileDirectURL)
		if !ok {
			d.skip(errs.ReasonBadRecord, id, page.String(), "latent "+strconv.Quote(l.LatentType)+": invalid file_direct_url "+strconv.Quote(*l.FileDirectURL))
			return nil
		}
		p.Name = l.LatentType
		switch {
		case strings.Contains(l.LatentType, "image") && !strings.Contains(l.LatentType, "latent_"):
			putPayload(&it.AdditionalImages, p)
		case l.IsMask:
			putPayload(&it.Masks, p)
		default:
			putPayload(&it.Latents, p)
		}
	}
	return it
}

// idText is a row id: a JSON string, or a number's text; "" when null or absent.
func idText(raw json.RawMessage) string {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || string(t) == "null" {
		return ""
	}
	if t[0] == '"' {
		var s string
		if json.Unmarshal(t, &s) == nil {
			return s
		}
		return ""
	}
	var n json.Number
	if json.Unmarshal(t, &n) == nil {
		return n.String()
	}
	return ""
}

// rowID is the id of a row that does not decode, for the log.
func rowID(raw json.RawMessage) string {
	var r struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(raw, &r) != nil {
		return ""
	}
	return idText(r.ID)
}

func numberToInt(n json.Number) int {
	if i, err := n.Int64(); err == nil {
		return int(i)
	}
	if f, err := n.Float64(); err == nil {
		return int(f)
	}
	return 0
}
