// Command trivy-db-fixture builds a small trivy vulnerability DB (schema 2)
// from fixture advisories with trivy-db's own Go package (the version trivy
// v0.74.0 is built with, see go.mod), packs it the way
// ghcr.io/aquasecurity/trivy-db:2 is packed, and pushes it to a registry.
// A test peer: the scans in the tests and the demo use this DB through
// scan-image's --db-repository, as an air-gapped user uses a mirror.
//
//	trivy-db-fixture -advisories advisories.json -out DIR [-push HOST/REPO:TAG] [-insecure]
//	trivy-db-fixture -corrupt -push HOST/REPO:TAG -insecure
//
// DIR gets trivy.db, metadata.json and db.tar.gz (the layer). -corrupt
// pushes an artifact that has trivy's DB media types but a layer that is no
// gzip stream (for the tests of a broken mirror).
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/aquasecurity/trivy-db/pkg/db"
	"github.com/aquasecurity/trivy-db/pkg/metadata"
	dbtypes "github.com/aquasecurity/trivy-db/pkg/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	bolt "go.etcd.io/bbolt"
)

// Media types of trivy's DB artifact (trivy pkg/db/db.go).
const (
	layerMediaType  = "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip"
	configMediaType = "application/vnd.aquasec.trivy.config.v1+json"
)

// Fixtures is the advisories file: data sources by bucket, then advisories.
type Fixtures struct {
	// Bucket name ("debian 12", "cargo::GitHub Security Advisory Rust") ->
	// the data source trivy reports for it.
	DataSources map[string]dbtypes.DataSource `json:"dataSources"`
	Advisories  []Advisory                    `json:"advisories"`
}

// Advisory is one vulnerability of one package in one bucket.
type Advisory struct {
	Bucket  string `json:"bucket"`
	Package string `json:"package"`
	ID      string `json:"id"`
	// Where the facts come from (not stored in the DB).
	Evidence           string   `json:"evidence"`
	VendorIDs          []string `json:"vendorIds,omitempty"`
	FixedVersion       string   `json:"fixedVersion,omitempty"`
	VulnerableVersions []string `json:"vulnerableVersions,omitempty"`
	PatchedVersions    []string `json:"patchedVersions,omitempty"`
	// UNKNOWN, LOW, MEDIUM, HIGH or CRITICAL, stored as the data source's
	// vendor severity.
	Severity    string   `json:"severity"`
	Title       string   `json:"title"`
	Description string   `json:"description"`
	CVSSv3      string   `json:"cvssV3,omitempty"`
	CVSSv3Score float64  `json:"cvssV3Score,omitempty"`
	References  []string `json:"references,omitempty"`
}

func main() {
	advisories := flag.String("advisories", "", "fixture advisories (JSON)")
	out := flag.String("out", "", "directory for trivy.db, metadata.json and db.tar.gz")
	push := flag.String("push", "", "push the DB artifact to this reference (HOST/REPO:TAG)")
	insecure := flag.Bool("insecure", false, "plain HTTP to the registry of -push")
	corrupt := flag.Bool("corrupt", false, "push an artifact with trivy's DB media types whose layer is not gzip")
	valid := flag.Duration("valid", 30*24*time.Hour, "NextUpdate = now + this")
	flag.Parse()
	if err := run(*advisories, *out, *push, *insecure, *corrupt, *valid); err != nil {
		fmt.Fprintln(os.Stderr, "trivy-db-fixture:", err)
		os.Exit(1)
	}
}

func run(advisories, out, push string, insecure, corrupt bool, valid time.Duration) error {
	var layer []byte
	switch {
	case corrupt:
		if push == "" {
			return errors.New("-corrupt needs -push")
		}
		layer = []byte("this is not a gzip stream: a broken trivy DB mirror\n")
	case advisories == "" || out == "":
		return errors.New("-advisories and -out are required (or -corrupt -push REF)")
	default:
		f, err := readFixtures(advisories)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(out, 0o755); err != nil {
			return err
		}
		if err := build(f, out, valid); err != nil {
			return err
		}
		if layer, err = pack(out); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(out, "db.tar.gz"), layer, 0o644); err != nil {
			return err
		}
		fmt.Printf("trivy-db-fixture: %d advisories -> %s (db.tar.gz %d bytes)\n", len(f.Advisories), out, len(layer))
	}
	if push == "" {
		return nil
	}
	digest, err := pushArtifact(push, insecure, layer)
	if err != nil {
		return fmt.Errorf("push %s: %w", push, err)
	}
	fmt.Printf("trivy-db-fixture: pushed %s@%s\n", push, digest)
	return nil
}

func readFixtures(path string) (Fixtures, error) {
	var f Fixtures
	b, err := os.ReadFile(path)
	if err != nil {
		return f, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return f, fmt.Errorf("%s: %w", path, err)
	}
	for i, a := range f.Advisories {
		if _, ok := f.DataSources[a.Bucket]; !ok {
			return f, fmt.Errorf("%s: advisory %d (%s): no data source for bucket %q", path, i, a.ID, a.Bucket)
		}
		if _, err := dbtypes.NewSeverity(a.Severity); err != nil {
			return f, fmt.Errorf("%s: advisory %d (%s): %w", path, i, a.ID, err)
		}
		if a.Evidence == "" {
			return f, fmt.Errorf("%s: advisory %d (%s): say where its facts come from (evidence)", path, i, a.ID)
		}
	}
	return f, nil
}

// build writes trivy.db and metadata.json into dir with trivy-db's db
// package: the same buckets and values its vulnsrc packages write.
func build(f Fixtures, dir string, valid time.Duration) error {
	_ = os.Remove(db.Path(dir))
	if err := db.Init(dir); err != nil {
		return err
	}
	dbc := db.Config{}
	err := dbc.BatchUpdate(func(tx *bolt.Tx) error {
		for bucket, src := range f.DataSources {
			if err := dbc.PutDataSource(tx, bucket, src); err != nil {
				return err
			}
		}
		for _, a := range f.Advisories {
			sev, _ := dbtypes.NewSeverity(a.Severity)
			adv := dbtypes.Advisory{
				VendorIDs:          a.VendorIDs,
				FixedVersion:       a.FixedVersion,
				VulnerableVersions: a.VulnerableVersions,
				PatchedVersions:    a.PatchedVersions,
			}
			if err := dbc.PutAdvisory(tx, []string{a.Bucket, a.Package}, a.ID, adv); err != nil {
				return err
			}
			source := f.DataSources[a.Bucket].ID
			vuln := dbtypes.Vulnerability{
				Title:          a.Title,
				Description:    a.Description,
				VendorSeverity: dbtypes.VendorSeverity{source: sev},
				References:     a.References,
			}
			if a.CVSSv3 != "" {
				vuln.CVSS = dbtypes.VendorCVSS{source: {V3Vector: a.CVSSv3, V3Score: a.CVSSv3Score}}
			}
			if err := dbc.PutVulnerability(tx, a.ID, vuln); err != nil {
				return err
			}
			if err := dbc.PutVulnerabilityID(tx, a.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	return metadata.NewClient(dir).Update(metadata.Metadata{
		Version:    db.SchemaVersion,
		NextUpdate: now.Add(valid),
		UpdatedAt:  now,
	})
}

// pack returns db.tar.gz: trivy.db and metadata.json at the top level.
func pack(dir string) ([]byte, error) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, name := range []string{"trivy.db", "metadata.json"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// rawManifest is a manifest pushed as written (remote.Put).
type rawManifest struct {
	body []byte
}

func (m rawManifest) RawManifest() ([]byte, error) { return m.body, nil }
func (m rawManifest) MediaType() (types.MediaType, error) {
	return types.OCIManifestSchema1, nil
}

// pushArtifact pushes the `{}` config, the layer and an OCI manifest that
// names them with trivy's media types, as the upstream DB is pushed.
func pushArtifact(ref string, insecure bool, layerBytes []byte) (string, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	tag, err := name.ParseReference(ref, opts...)
	if err != nil {
		return "", err
	}
	ropts := []remote.Option{remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	config := static.NewLayer([]byte("{}"), configMediaType)
	layer := static.NewLayer(layerBytes, layerMediaType)
	for _, l := range []v1.Layer{config, layer} {
		if err := remote.WriteLayer(tag.Context(), l, ropts...); err != nil {
			return "", err
		}
	}
	desc := func(l v1.Layer, annotations map[string]string) (v1.Descriptor, error) {
		d, err := l.Digest()
		if err != nil {
			return v1.Descriptor{}, err
		}
		size, err := l.Size()
		if err != nil {
			return v1.Descriptor{}, err
		}
		mt, err := l.MediaType()
		if err != nil {
			return v1.Descriptor{}, err
		}
		return v1.Descriptor{MediaType: mt, Digest: d, Size: size, Annotations: annotations}, nil
	}
	cd, err := desc(config, nil)
	if err != nil {
		return "", err
	}
	ld, err := desc(layer, map[string]string{"org.opencontainers.image.title": "db.tar.gz"})
	if err != nil {
		return "", err
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        cd,
		Layers:        []v1.Descriptor{ld},
	}
	body, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	if err := remote.Put(tag, rawManifest{body: body}, ropts...); err != nil {
		return "", err
	}
	h, _, err := v1.SHA256(bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	return h.String(), nil
}
