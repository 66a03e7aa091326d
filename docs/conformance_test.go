// Package docs holds the repository's documents; its tests keep them true
// to the code: every requirement ID the code cites is listed in the
// conformance lists, every test those lists name exists, and nothing in the
// repository points to a file outside it.
package docs

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// conformanceLists maps each requirement-ID prefix to the list that defines
// its IDs, relative to the repository root.
var conformanceLists = map[string]string{
	"ENO": "docs/conformance/rfc8547.md",
	"TC":  "docs/conformance/rfc8548.md",
}

// citedID matches a requirement ID as code and tests cite it.
var citedID = regexp.MustCompile(`\b(ENO|TC)-([0-9]+)\b`)

// listedID matches the first cell of a conformance list's table row: the ID
// that row defines.
var listedID = regexp.MustCompile(`(?m)^\| (ENO|TC)-([0-9]+) \|`)

// outsideRef matches references to files that are not in the repository:
// the development notes and specification digests the code was once written
// against, and the per-package conformance maps these lists replaced.
// The names are written with character classes so that this file does not
// itself contain the references it looks for (a plain grep for them, as a
// reviewer would run, then finds nothing in a clean tree).
var outsideRef = regexp.MustCompile(`\.\.[/]shared|/work[/]shared|\b(DESI[G]N|STYL[E])\.md\b|netstack-on-t[u]n|(?i:\bdigest\b[^\n§]{0,30}§)|\b(tcp-en[o]|tcpcryp[t])\.md\b|\bCONFORMANC[E]\.md\b`)

// namedTest matches a test or fuzz target named in backquotes in a list
// (a subtest pattern such as `TestX/ENO-4-*` names TestX).
var namedTest = regexp.MustCompile("`((?:Test|Fuzz)[A-Za-z0-9_]+)")

// goTestFunc matches a top-level test or fuzz function.
var goTestFunc = regexp.MustCompile(`(?m)^func ((?:Test|Fuzz)[A-Za-z0-9_]+)\(`)

// mdLink matches the target of a Markdown link or image.
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// thisFile is skipped by the scans: it spells out the patterns it looks for.
const thisFile = "docs/conformance_test.go"

// repoFile is one file of the repository, by slash path from the root.
type repoFile struct {
	path string
	data []byte
}

// repoRoot returns the repository root: the test runs in docs/.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root %s: %v", root, err)
	}
	return root
}

// skipDir reports directories that are not part of the source tree: version
// control and build or benchmark output.
func skipDir(name string) bool {
	switch name {
	case ".git", "bin", "bench-results":
		return true
	}
	return false
}

// walkRepo returns every text file of the repository (files holding a NUL
// byte are binary and skipped), except this one.
func walkRepo(t *testing.T, root string) []repoFile {
	t.Helper()
	var files []repoFile
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != root && skipDir(d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || d.Name() == ".git" {
			return nil // a worktree's .git is a file naming the main repository
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == thisFile {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.IndexByte(b, 0) >= 0 {
			return nil
		}
		files = append(files, repoFile{rel, b})
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", root, err)
	}
	return files
}

// listedIDs reads the IDs a conformance list defines, in order, and checks
// that they are 1..n without gaps or repeats.
func listedIDs(t *testing.T, root, prefix string) map[string]bool {
	t.Helper()
	path := conformanceLists[prefix]
	b, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		t.Fatalf("conformance list: %v", err)
	}
	ids := make(map[string]bool)
	var nums []int
	for _, m := range listedID.FindAllSubmatch(b, -1) {
		if string(m[1]) != prefix {
			t.Errorf("%s: row for %s-%s, want only %s-n rows", path, m[1], m[2], prefix)
			continue
		}
		id := fmt.Sprintf("%s-%s", m[1], m[2])
		if ids[id] {
			t.Errorf("%s: %s listed twice", path, id)
		}
		ids[id] = true
		n, _ := strconv.Atoi(string(m[2]))
		nums = append(nums, n)
	}
	slices.Sort(nums)
	for i, n := range nums {
		if n != i+1 {
			t.Errorf("%s: IDs are not numbered 1..%d without gaps (found %s-%d at position %d)", path, len(nums), prefix, n, i+1)
			break
		}
	}
	if len(nums) == 0 {
		t.Errorf("%s: no %s-n rows", path, prefix)
	}
	return ids
}

// TestCitedRequirementIDsListed fails when Go code cites an ENO-n or TC-n
// requirement that docs/conformance does not list, so every ID a reader
// meets in the code resolves to its RFC section and statement.
func TestCitedRequirementIDsListed(t *testing.T) {
	root := repoRoot(t)
	listed := map[string]map[string]bool{}
	for prefix := range conformanceLists {
		listed[prefix] = listedIDs(t, root, prefix)
	}
	missing := map[string][]string{} // ID -> files citing it
	cited := 0
	for _, f := range walkRepo(t, root) {
		if !strings.HasSuffix(f.path, ".go") {
			continue
		}
		for _, m := range citedID.FindAllSubmatch(f.data, -1) {
			cited++
			prefix := string(m[1])
			id := prefix + "-" + string(m[2])
			if !listed[prefix][id] && !slices.Contains(missing[id], f.path) {
				missing[id] = append(missing[id], f.path)
			}
		}
	}
	if cited == 0 {
		t.Fatal("no requirement IDs found in any .go file: is the walk rooted right?")
	}
	ids := make([]string, 0, len(missing))
	for id := range missing {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		t.Errorf("%s is cited in %s but not listed in %s", id, strings.Join(missing[id], ", "), conformanceLists[strings.SplitN(id, "-", 2)[0]])
	}
}

// TestConformanceTestsExist fails when a conformance list names a test or
// fuzz target that no _test.go file defines (renamed or removed).
func TestConformanceTestsExist(t *testing.T) {
	root := repoRoot(t)
	defined := map[string]bool{}
	for _, f := range walkRepo(t, root) {
		if !strings.HasSuffix(f.path, "_test.go") {
			continue
		}
		for _, m := range goTestFunc.FindAllSubmatch(f.data, -1) {
			defined[string(m[1])] = true
		}
	}
	for _, path := range conformanceLists {
		b, err := os.ReadFile(filepath.Join(root, path))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range namedTest.FindAllSubmatch(b, -1) {
			if name := string(m[1]); !defined[name] {
				t.Errorf("%s names %s, which no _test.go file defines", path, name)
			}
		}
	}
}

// TestNoReferencesOutsideRepository fails when any file refers to a
// document outside the repository, which a clone cannot follow.
func TestNoReferencesOutsideRepository(t *testing.T) {
	root := repoRoot(t)
	for _, f := range walkRepo(t, root) {
		for i, line := range bytes.Split(f.data, []byte("\n")) {
			if m := outsideRef.Find(line); m != nil {
				t.Errorf("%s:%d refers outside the repository (%q): %s", f.path, i+1, m, bytes.TrimSpace(line))
			}
		}
	}
}

// TestMarkdownLinksResolve fails when a Markdown file links to a relative
// path that does not exist in the repository.
func TestMarkdownLinksResolve(t *testing.T) {
	root := repoRoot(t)
	for _, f := range walkRepo(t, root) {
		if !strings.HasSuffix(f.path, ".md") {
			continue
		}
		for _, m := range mdLink.FindAllSubmatch(f.data, -1) {
			target := string(m[1])
			if strings.Contains(target, "://") || strings.HasPrefix(target, "#") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			target, _, _ = strings.Cut(target, "#")
			p := filepath.Join(root, filepath.FromSlash(path.Dir(f.path)), filepath.FromSlash(target))
			if _, err := os.Stat(p); err != nil {
				t.Errorf("%s links to %s, which does not exist", f.path, m[1])
			}
		}
	}
}
