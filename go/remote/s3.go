// S3 and S3-compatible object storage (AWS S3, MinIO, Cloudflare R2, GCS's S3 interoperability
// endpoint).
//
// Design: minio-go (a well-kept client library) lists buckets (ListObjectsV2, paginated, with its
// own retries) and presigns GET URLs with AWS Signature V4 — presigning is local, no request.
// The bytes then come through this package's HTTP layer like any http(s) URL: retries with backoff
// on 5xx/429 (S3's SlowDown is a 503), Range resume of a cut shard, the byte budget. So a bucket
// has the same guarantees as plain HTTP, and no request signing of our own.
package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/datago-dev/datago/go/config"
	"github.com/datago-dev/datago/go/errs"
)

// S3Config is the top-level "s3" config object. Every key is optional: absent keys come from the
// standard places (AWS_* environment variables, the shared credentials file).
type S3Config struct {
	EndpointURL     string `json:"endpoint_url"`      // default $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, else AWS
	Region          string `json:"region"`            // default $AWS_REGION, $AWS_DEFAULT_REGION, else asked from the bucket
	AccessKeyID     string `json:"access_key_id"`     // default $AWS_ACCESS_KEY_ID, then the shared credentials file
	SecretAccessKey string `json:"secret_access_key"` // with access_key_id
	SessionToken    string `json:"session_token"`     // with access_key_id (temporary credentials)
	Profile         string `json:"profile"`           // shared credentials file profile (default $AWS_PROFILE, "default")
	Anonymous       bool   `json:"anonymous"`         // unsigned requests (public buckets)
	// AddressingStyle is "auto" (default: virtual-hosted on AWS, path style for IPs and other hosts
	// minio-go knows), "path" (https://host/bucket/key) or "virtual" (https://bucket.host/key).
	AddressingStyle string  `json:"addressing_style"`
	PresignExpiry   float64 `json:"presign_expiry"`   // seconds a presigned GET stays valid (default 3600)
	ListPageSize    int     `json:"list_page_size"`   // keys per ListObjectsV2 page (default 1000, S3's maximum)
	ListMaxRetries  *int    `json:"list_max_retries"` // retries of a listing request (default 10)
}

// SupportedSchemes names the URL schemes datago reads, for error messages.
const SupportedSchemes = "local paths, file://, http://, https://, s3://"

// IsS3 reports whether s is an s3:// URL.
func IsS3(s string) bool { return strings.HasPrefix(strings.ToLower(s), "s3://") }

// CheckScheme refuses a URL of a scheme datago does not read (gs://, hdfs://, ...): errs.Value
// naming the supported ones. Paths without a scheme pass.
func CheckScheme(key, s string) error {
	i := strings.Index(s, "://")
	if i <= 0 {
		return nil
	}
	switch strings.ToLower(s[:i]) {
	case "file", "http", "https", "s3":
		return nil
	case "gs", "gcs":
		return errs.Errorf(errs.Value, "config key %s: unsupported URL scheme in %q: datago reads %s; for Google Cloud Storage use s3://bucket/... with s3.endpoint_url (or AWS_ENDPOINT_URL) https://storage.googleapis.com and HMAC keys", key, s, SupportedSchemes)
	}
	return errs.Errorf(errs.Value, "config key %s: unsupported URL scheme in %q: datago reads %s", key, s, SupportedSchemes)
}

// ParseS3 splits s3://bucket/key into the bucket and the key (which may be empty or a prefix).
func ParseS3(raw string) (bucket, key string, err error) {
	if !IsS3(raw) {
		return "", "", errs.Errorf(errs.Value, "not an s3:// URL: %q", raw)
	}
	rest := raw[len("s3://"):]
	bucket, key, _ = strings.Cut(rest, "/")
	if bucket == "" {
		return "", "", errs.Errorf(errs.Value, "invalid URL %q: no bucket (expected s3://bucket/prefix)", raw)
	}
	return bucket, key, nil
}

// S3 is a bucket client: listing and presigning. Safe for concurrent use.
type S3 struct {
	mc        *minio.Client
	endpoint  string
	expiry    time.Duration
	pageSize  int
	anonymous bool
	credsFrom string // where the credentials came from, for error messages

	mu      sync.Mutex
	checked map[string]bool // buckets that answered
}

var (
	s3Mu     sync.Mutex
	s3Shared = map[string]*S3{} // one S3 client per distinct config (so clients share connections)
)

// S3For returns the S3 client for config c (its "s3" object and the AWS_* environment). Bad keys
// are errs.Value naming the key.
func S3For(c *config.Config) (*S3, error) {
	var sc S3Config
	if err := config.DecodeStrict(c.S3, "s3.", &sc); err != nil {
		return nil, err
	}
	return NewS3(sc)
}

// NewS3 builds a client from sc, filling absent values from the environment.
func NewS3(sc S3Config) (*S3, error) {
	envs := []string{"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION",
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE"}
	keyParts := []string{fmt.Sprintf("%+v", sc)}
	for _, e := range envs {
		keyParts = append(keyParts, os.Getenv(e))
	}
	cacheKey := strings.Join(keyParts, "\x00")
	s3Mu.Lock()
	defer s3Mu.Unlock()
	if s, ok := s3Shared[cacheKey]; ok {
		return s, nil
	}
	s, err := newS3(sc)
	if err != nil {
		return nil, err
	}
	s3Shared[cacheKey] = s
	return s, nil
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

func newS3(sc S3Config) (*S3, error) {
	endpoint := sc.EndpointURL
	if endpoint == "" {
		endpoint = firstEnv("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
	}
	if endpoint == "" {
		endpoint = "https://s3.amazonaws.com"
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errs.Errorf(errs.Value, "config key s3.endpoint_url (or AWS_ENDPOINT_URL): %q is not an http(s) URL", endpoint)
	}
	region := sc.Region
	if region == "" {
		region = firstEnv("AWS_REGION", "AWS_DEFAULT_REGION")
	}
	lookup := minio.BucketLookupAuto
	switch strings.ToLower(sc.AddressingStyle) {
	case "", "auto":
	case "path":
		lookup = minio.BucketLookupPath
	case "virtual", "virtual-hosted", "dns":
		lookup = minio.BucketLookupDNS
	default:
		return nil, errs.Errorf(errs.Value, "config key s3.addressing_style: %q is not one of auto, path, virtual", sc.AddressingStyle)
	}
	if sc.PresignExpiry < 0 || sc.PresignExpiry > 7*24*3600 {
		return nil, errs.Errorf(errs.Value, "config key s3.presign_expiry must be in [0, 604800] seconds, got %g", sc.PresignExpiry)
	}
	expiry := time.Hour
	if sc.PresignExpiry > 0 {
		expiry = time.Duration(sc.PresignExpiry * float64(time.Second))
	}
	if sc.ListPageSize < 0 || sc.ListPageSize > 1000 {
		return nil, errs.Errorf(errs.Value, "config key s3.list_page_size must be in [0, 1000], got %d", sc.ListPageSize)
	}
	var creds *credentials.Credentials
	credsFrom := ""
	switch {
	case sc.Anonymous:
		creds = credentials.New(&credentials.Static{Value: credentials.Value{SignerType: credentials.SignatureAnonymous}})
		credsFrom = "anonymous (s3.anonymous)"
	case sc.AccessKeyID != "" || sc.SecretAccessKey != "":
		if sc.AccessKeyID == "" || sc.SecretAccessKey == "" {
			return nil, errs.Errorf(errs.Value, "config keys s3.access_key_id and s3.secret_access_key go together (one is missing)")
		}
		creds = credentials.NewStaticV4(sc.AccessKeyID, sc.SecretAccessKey, sc.SessionToken)
		credsFrom = "s3.access_key_id"
	default:
		// the standard chain: environment, then the shared credentials file; none: anonymous
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{},
			&credentials.FileAWSCredentials{Profile: sc.Profile},
		})
		v, _ := creds.Get()
		switch {
		case v.AccessKeyID == "":
			credsFrom = "none found (AWS_ACCESS_KEY_ID, AWS_PROFILE / the shared credentials file): anonymous requests"
		case os.Getenv("AWS_ACCESS_KEY_ID") != "" || os.Getenv("AWS_ACCESS_KEY") != "":
			credsFrom = "AWS_ACCESS_KEY_ID"
		default:
			credsFrom = "the shared credentials file"
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableCompression = true
	opts := &minio.Options{Creds: creds, Secure: u.Scheme == "https", Region: region, BucketLookup: lookup, Transport: tr}
	if sc.ListMaxRetries != nil {
		if *sc.ListMaxRetries < 0 {
			return nil, errs.Errorf(errs.Value, "config key s3.list_max_retries must be >= 0, got %d", *sc.ListMaxRetries)
		}
		opts.MaxRetries = *sc.ListMaxRetries + 1
	}
	mc, err := minio.New(u.Host, opts)
	if err != nil {
		return nil, errs.Errorf(errs.Value, "s3 endpoint %q: %v", endpoint, err)
	}
	mc.SetAppInfo("datago", "1")
	return &S3{mc: mc, endpoint: endpoint, expiry: expiry, pageSize: sc.ListPageSize,
		anonymous: sc.Anonymous, credsFrom: credsFrom, checked: map[string]bool{}}, nil
}

// Object is a listed object.
type Object struct {
	Key  string
	Size int64
}

// CheckBucket asks for the bucket (a ListObjectsV2 of one key; once it answered, not again): a missing bucket, a refusal, a wrong region
// or an unreachable endpoint is reported here, before any listing, naming the URL.
func (s *S3) CheckBucket(ctx context.Context, rawURL string) error {
	bucket, _, err := ParseS3(rawURL)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.checked[bucket] {
		return nil
	}
	// ListObjectsV2 of at most one key: unlike HEAD bucket, a refusal comes with an error code
	ch := s.mc.ListObjects(ctx, bucket, minio.ListObjectsOptions{MaxKeys: 1, Recursive: false})
	var lerr error
	for o := range ch {
		if o.Err != nil && lerr == nil {
			lerr = o.Err
		}
	}
	if lerr != nil {
		return s.wrap(rawURL, "", lerr) // not remembered: the bucket may be created or opened later
	}
	s.checked[bucket] = true
	return nil
}

// List lists every object below rawURL's prefix (recursively, ListObjectsV2 paginated), in S3's
// order (UTF-8 byte order of keys, which is Go's string order).
func (s *S3) List(ctx context.Context, rawURL string) ([]Object, error) {
	bucket, prefix, err := ParseS3(rawURL)
	if err != nil {
		return nil, err
	}
	if err := s.CheckBucket(ctx, rawURL); err != nil {
		return nil, err
	}
	var out []Object
	for o := range s.mc.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true, MaxKeys: s.pageSize}) {
		if o.Err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, s.wrap(rawURL, "", o.Err)
		}
		if strings.HasSuffix(o.Key, "/") {
			continue // a folder marker
		}
		out = append(out, Object{Key: o.Key, Size: o.Size})
	}
	return out, nil
}

// Presign returns an https (or http) URL that GETs s3://bucket/key for the configured expiry.
// It sends no request when the region is known (s3.region / AWS_REGION); otherwise it asks the
// bucket's location once.
func (s *S3) Presign(ctx context.Context, rawURL string) (string, error) {
	bucket, key, err := ParseS3(rawURL)
	if err != nil {
		return "", err
	}
	if key == "" {
		return "", errs.Errorf(errs.Value, "%s names a bucket, not an object", rawURL)
	}
	if s.anonymous {
		u := s.mc.EndpointURL()
		if s.virtualHost(bucket) {
			u.Host = bucket + "." + u.Host
			u.Path = "/" + key
		} else {
			u.Path = "/" + bucket + "/" + key
		}
		return u.String(), nil
	}
	u, err := s.mc.PresignedGetObject(ctx, bucket, key, s.expiry, nil)
	if err != nil {
		return "", s.wrap(rawURL, key, err)
	}
	return u.String(), nil
}

func (s *S3) virtualHost(bucket string) bool {
	u := s.mc.EndpointURL()
	// minio-go's own rule is internal; for unsigned URLs: path style, except on amazonaws.com with
	// a DNS-compatible bucket name
	return strings.HasSuffix(u.Hostname(), "amazonaws.com") && !strings.Contains(bucket, ".")
}

// Key returns rawURL with key appended to its bucket (s3://bucket/key).
func S3URL(bucket, key string) string { return "s3://" + bucket + "/" + key }

// wrap turns a minio-go error into a user-facing error naming rawURL (and the key).
func (s *S3) wrap(rawURL, key string, err error) error {
	var er minio.ErrorResponse
	if !errors.As(err, &er) {
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			return errs.Errorf(errs.OS, "%s: cannot reach the S3 endpoint %s: %v", rawURL, s.endpoint, urlErr.Err)
		}
		return errs.Errorf(errs.OS, "%s: %v", rawURL, err)
	}
	return s3Error(rawURL, key, er.StatusCode, er.Code, er.Message, er.Region, s.credsFrom, s.endpoint)
}

// s3Error classifies an S3 error answer.
func s3Error(rawURL, key string, status int, code, message, region, credsFrom, endpoint string) error {
	what := rawURL
	if key != "" && !strings.HasSuffix(rawURL, key) {
		what += " (key " + key + ")"
	}
	detail := code
	if message != "" {
		detail += ": " + message
	}
	switch code {
	case "NoSuchBucket":
		return errs.Errorf(errs.NotFound, "%s: the bucket does not exist at %s (NoSuchBucket)", what, endpoint)
	case "NoSuchKey":
		return errs.Errorf(errs.NotFound, "%s: no such object (NoSuchKey)", what)
	case "AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException":
		msg := fmt.Sprintf("%s: wrong region (%s)", what, detail)
		if region != "" {
			msg += fmt.Sprintf("; the bucket is in %s: set s3.region or AWS_REGION", region)
		} else {
			msg += ": set s3.region or AWS_REGION to the bucket's region"
		}
		return errs.Errorf(errs.OS, "%s", msg)
	}
	if status == http.StatusMovedPermanently || status == http.StatusBadRequest && region != "" {
		return errs.Errorf(errs.OS, "%s: wrong region (HTTP %d %s); the bucket is in %q: set s3.region or AWS_REGION", what, status, code, region)
	}
	if status == http.StatusForbidden || status == http.StatusUnauthorized || code == "AccessDenied" ||
		code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" {
		return errs.Errorf(errs.Permission, "%s: access denied (HTTP %d %s); credentials: %s", what, status, detail, credsFrom)
	}
	if status == http.StatusNotFound {
		return errs.Errorf(errs.NotFound, "%s: not found (HTTP 404 %s)", what, detail)
	}
	return errs.Errorf(errs.OS, "%s: HTTP %d %s", what, status, detail)
}

// S3ErrorFrom rewrites a failed presigned GET (a *StatusError whose body is S3's XML error) into
// an error naming the s3:// URL and the S3 error code; other errors pass unchanged.
func (s *S3) S3ErrorFrom(rawURL string, err error) error {
	var se *StatusError
	if !errors.As(err, &se) {
		return err
	}
	// the body is quoted truncated (StatusError.Body): read the XML elements one by one
	tag := func(name string) string {
		m := regexp.MustCompile("<" + name + ">([^<]*)</" + name + ">").FindStringSubmatch(se.Body)
		if m == nil {
			return ""
		}
		return html.UnescapeString(m[1])
	}
	_, key, _ := ParseS3(rawURL)
	return s3Error(rawURL, key, se.Code, tag("Code"), tag("Message"), tag("Region"), s.credsFrom, s.endpoint)
}

// MarshalS3Config is a helper for tests and bindings: the "s3" object as JSON.
func MarshalS3Config(sc S3Config) json.RawMessage {
	b, _ := json.Marshal(sc)
	return b
}
