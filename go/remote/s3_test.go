package remote

import (
	"strings"
	"testing"

	"github.com/datago-dev/datago/go/errs"
)

func TestParseS3AndSchemes(t *testing.T) {
	for _, tc := range []struct{ in, bucket, key string }{
		{"s3://b/p/q.tar", "b", "p/q.tar"}, {"S3://b", "b", ""}, {"s3://b/", "b", ""},
	} {
		b, k, err := ParseS3(tc.in)
		if err != nil || b != tc.bucket || k != tc.key {
			t.Errorf("%s: %q %q %v", tc.in, b, k, err)
		}
	}
	if _, _, err := ParseS3("s3:///k"); errs.KindOf(err) != errs.Value {
		t.Errorf("no bucket: %v", err)
	}
	for _, ok := range []string{"/data", "rel/x", "file:///x", "http://h/x", "https://h/x", "s3://b/x"} {
		if err := CheckScheme("k", ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"gs://b/x", "hdfs://nn/x", "ftp://h/x"} {
		err := CheckScheme("source_config.root_path", bad)
		if errs.KindOf(err) != errs.Value || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "s3://") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

func TestS3ErrorsAreClassified(t *testing.T) {
	s := &S3{endpoint: "https://s3.amazonaws.com", credsFrom: "AWS_ACCESS_KEY_ID"}
	body := func(code, msg, extra string) string {
		// as StatusError quotes it: one line, truncated to 200 bytes
		b := `<?xml version="1.0" encoding="UTF-8"?> <Error><Code>` + code + `</Code><Message>` + msg + `</Message>` + extra + `</Error>`
		return errorBody(strings.NewReader(b))
	}
	for _, tc := range []struct {
		status int
		body   string
		kind   errs.Kind
		want   []string
	}{
		{403, body("AccessDenied", "Access Denied", ""), errs.Permission, []string{"s3://b/k/x.tar", "403 AccessDenied", "AWS_ACCESS_KEY_ID"}},
		{403, body("SignatureDoesNotMatch", "The request signature", ""), errs.Permission, []string{"SignatureDoesNotMatch"}},
		{404, body("NoSuchKey", "The specified key does not exist.", ""), errs.NotFound, []string{"s3://b/k/x.tar", "NoSuchKey"}},
		{404, body("NoSuchBucket", "The specified bucket does not exist", ""), errs.NotFound, []string{"bucket does not exist", "NoSuchBucket"}},
		{400, body("AuthorizationHeaderMalformed", "the region 'us-east-1' is wrong", "<Region>eu-west-1</Region>"), errs.OS, []string{"wrong region", "eu-west-1", "AWS_REGION"}},
		{301, body("PermanentRedirect", "use the right endpoint", ""), errs.OS, []string{"wrong region"}},
		{500, body("InternalError", "oops", ""), errs.OS, []string{"HTTP 500 InternalError"}},
	} {
		err := s.S3ErrorFrom("s3://b/k/x.tar", &StatusError{URL: "https://presigned", Code: tc.status, Body: tc.body})
		if errs.KindOf(err) != tc.kind {
			t.Errorf("%d %s: kind %v, want %v (%v)", tc.status, tc.body, errs.KindOf(err), tc.kind, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q does not contain %q", err, w)
			}
		}
		if strings.Contains(err.Error(), "presigned") {
			t.Errorf("%q names the presigned URL, not the s3:// one", err)
		}
	}
}
