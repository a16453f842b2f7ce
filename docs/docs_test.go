// Package docs_test checks the documentation, README.md and docs/*.md,
// against the repository: every relative link and anchor resolves, the
// SQLite schema in storage.md is sink.Schema, the flags table in
// operations.md lists exactly the flags of ingest --help, and the shell
// blocks marked to run do run.
//
// A block runs when the line before its fence is
//
//	<!-- docs_test: run -->
//
// Each of its lines is one command, run by bash in a temporary directory
// holding a link to testdata/, with the built ingest first on PATH ("go
// run ./cmd/ingest" is run as that binary), in the order the files and
// blocks come (README.md first), so a later block may read what an earlier
// one wrote. Mark only commands that are quick, need no network and no
// cloud project, and change nothing outside their directory.
package docs_test

import (
	"bufio"
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
)

// root is the repository root, relative to this package's directory.
const root = ".."

// runMarker is the line that marks the next fenced block as commands to run.
const runMarker = "<!-- docs_test: run -->"

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// ingestBinary builds cmd/ingest once, without the race detector whatever
// the test runs with, and returns the directory that holds it.
func ingestBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "ingest-docs-bin-")
		if binErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, "ingest"), "./cmd/ingest")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/ingest: %w\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

// docFiles returns README.md and docs/*.md, as paths relative to this
// package's directory, README.md first.
func docFiles(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(docs)
	return append([]string{filepath.Join(root, "README.md")}, docs...)
}

// block is a fenced code block of a markdown file.
type block struct {
	start  int      // line number of the fence, from 1
	info   string   // the fence's info string ("sh", "sql", "")
	lines  []string // the lines between the fences
	marked bool     // the line before the fence is runMarker
}

// markdown is a file split into prose lines (fenced blocks blanked, with
// their line numbers kept) and its fenced blocks.
type markdown struct {
	path   string
	prose  []string // prose[i] is line i+1, "" inside fences
	blocks []block
}

func readMarkdown(t *testing.T, path string) markdown {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	md := markdown{path: path}
	var cur *block
	prev := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		text := sc.Text()
		trimmed := strings.TrimSpace(text)
		switch {
		case cur == nil && strings.HasPrefix(trimmed, "```"):
			cur = &block{start: n, info: strings.TrimSpace(strings.TrimPrefix(trimmed, "```")), marked: strings.TrimSpace(prev) == runMarker}
			md.prose = append(md.prose, "")
		case cur != nil && trimmed == "```":
			md.blocks = append(md.blocks, *cur)
			cur = nil
			md.prose = append(md.prose, "")
		case cur != nil:
			cur.lines = append(cur.lines, text)
			md.prose = append(md.prose, "")
		default:
			md.prose = append(md.prose, text)
		}
		prev = text
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Fatalf("%s:%d: fenced block never closed", path, cur.start)
	}
	return md
}

var (
	codeSpanRE = regexp.MustCompile("`+[^`]*`+")
	linkRE     = regexp.MustCompile(`\[([^\]]*)\]\(([^)\s]+)\)`)
	headingRE  = regexp.MustCompile(`^#{1,6}\s+(.*?)\s*#*\s*$`)
	schemeRE   = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
)

// anchors returns the anchors GitHub gives the headings of md: lower case,
// punctuation dropped, spaces as hyphens, a repeated one numbered.
func anchors(md markdown) map[string]bool {
	seen := map[string]int{}
	out := map[string]bool{}
	for _, l := range md.prose {
		m := headingRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		text := linkRE.ReplaceAllString(m[1], "$1")
		var b strings.Builder
		for _, r := range strings.ToLower(text) {
			switch {
			case unicode.IsLetter(r), unicode.IsNumber(r), unicode.IsMark(r), r == '-', r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteByte('-')
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out[a+"-"+strconv.Itoa(n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

func TestLinks(t *testing.T) {
	parsed := map[string]markdown{}
	load := func(path string) markdown {
		path = filepath.Clean(path)
		if md, ok := parsed[path]; ok {
			return md
		}
		md := readMarkdown(t, path)
		parsed[path] = md
		return md
	}
	checked := 0
	for _, path := range docFiles(t) {
		md := load(path)
		for i, l := range md.prose {
			for _, m := range linkRE.FindAllStringSubmatch(codeSpanRE.ReplaceAllString(l, ""), -1) {
				target := m[2]
				if schemeRE.MatchString(target) {
					continue // another site: not checked here
				}
				checked++
				where := fmt.Sprintf("%s:%d: link %q", path, i+1, target)
				file, anchor, _ := strings.Cut(target, "#")
				dest := path
				if file != "" {
					dest = filepath.Join(filepath.Dir(path), file)
					if _, err := os.Stat(dest); err != nil {
						t.Errorf("%s: no such file or directory %s", where, dest)
						continue
					}
				}
				if anchor == "" {
					continue
				}
				if !strings.HasSuffix(dest, ".md") {
					t.Errorf("%s: an anchor into a file that is not markdown", where)
					continue
				}
				if !anchors(load(dest))[anchor] {
					t.Errorf("%s: %s has no heading with the anchor #%s", where, dest, anchor)
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no relative links found: is the parser broken?")
	}
}

// normalizeSQL returns the statements of ddl, comments dropped, IF NOT
// EXISTS dropped, white space collapsed, in sorted order.
func normalizeSQL(ddl string) []string {
	var b strings.Builder
	for l := range strings.SplitSeq(ddl, "\n") {
		if i := strings.Index(l, "--"); i >= 0 {
			l = l[:i]
		}
		b.WriteString(l)
		b.WriteByte(' ')
	}
	s := strings.Join(strings.Fields(b.String()), " ")
	s = strings.ReplaceAll(s, "IF NOT EXISTS ", "")
	for _, p := range []string{"(", ")", ","} {
		s = strings.ReplaceAll(s, " "+p, p)
		s = strings.ReplaceAll(s, p+" ", p)
	}
	var out []string
	for st := range strings.SplitSeq(s, ";") {
		if st = strings.TrimSpace(st); st != "" {
			out = append(out, st)
		}
	}
	slices.Sort(out)
	return out
}

// sinkSchema returns the constant sink.Schema, read from the source so that
// this test needs neither SQLite nor Firestore linked in.
func sinkSchema(t *testing.T) string {
	t.Helper()
	path := filepath.Join(root, "sink", "sqlite.go")
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if name.Name != "Schema" || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Fatalf("%s: Schema is not a string literal any more: compare it some other way", path)
				}
				s, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
		}
	}
	t.Fatalf("%s: no const Schema", path)
	return ""
}

func TestSQLiteSchema(t *testing.T) {
	path := filepath.Join(root, "docs", "storage.md")
	md := readMarkdown(t, path)
	i := slices.IndexFunc(md.blocks, func(b block) bool { return b.info == "sql" })
	if i < 0 {
		t.Fatalf("%s: no sql block: the schema belongs there", path)
	}
	doc := normalizeSQL(strings.Join(md.blocks[i].lines, "\n"))
	code := normalizeSQL(sinkSchema(t))
	for _, s := range doc {
		if !slices.Contains(code, s) {
			t.Errorf("%s:%d: the schema shows a statement sink.Schema lacks:\n\t%s", path, md.blocks[i].start, s)
		}
	}
	for _, s := range code {
		if !slices.Contains(doc, s) {
			t.Errorf("%s:%d: sink.Schema has a statement the schema shown lacks:\n\t%s", path, md.blocks[i].start, s)
		}
	}
}

func TestFlagsTable(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ingest")
	}
	help, _ := exec.Command(filepath.Join(ingestBinary(t), "ingest"), "--help").CombinedOutput()
	var fromHelp []string
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllStringSubmatch(string(help), -1) {
		fromHelp = append(fromHelp, m[1])
	}
	if len(fromHelp) < 10 {
		t.Fatalf("ingest --help lists %d flags: is its format new?\n%s", len(fromHelp), help)
	}
	path := filepath.Join(root, "docs", "operations.md")
	md := readMarkdown(t, path)
	rowRE := regexp.MustCompile("^\\| `--([a-z0-9-]+)` \\|")
	var fromTable []string
	for _, l := range md.prose {
		if m := rowRE.FindStringSubmatch(l); m != nil {
			fromTable = append(fromTable, m[1])
		}
	}
	for _, f := range fromHelp {
		if !slices.Contains(fromTable, f) {
			t.Errorf("%s: the flags table lacks --%s, which ingest --help lists", path, f)
		}
	}
	for _, f := range fromTable {
		if !slices.Contains(fromHelp, f) {
			t.Errorf("%s: the flags table lists --%s, which ingest --help does not", path, f)
		}
	}
}

func TestCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs ingest")
	}
	bin := ingestBinary(t)
	testdata, err := filepath.Abs(filepath.Join(root, "testdata"))
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	if err := os.Symlink(testdata, filepath.Join(work, "testdata")); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k == "INGEST_TOKEN" || k == "INGEST_READ_TOKEN" || k == "PATH" {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"INGEST_NER_IMAGE_DIR="+filepath.Join(work, ".ner-image"))

	ran := 0
	for _, path := range docFiles(t) {
		md := readMarkdown(t, path)
		for _, b := range md.blocks {
			if !b.marked {
				continue
			}
			if b.info != "sh" {
				t.Errorf("%s:%d: a block marked to run must be a sh block (got %q)", path, b.start, b.info)
				continue
			}
			for _, c := range commands(b.lines) {
				ran++
				runCommand(t, fmt.Sprintf("%s:%d", path, b.start), c, work, env)
			}
		}
	}
	if ran == 0 {
		t.Fatalf("no block marked %q: the README's first command should be", runMarker)
	}
}

// commands returns the commands of a block's lines: one a line, a line
// ending in a backslash joined to the next, blank lines and comments left
// out, "go run ./cmd/ingest" replaced by the built binary.
func commands(lines []string) []string {
	var out []string
	var cur strings.Builder
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if cur.Len() == 0 && (l == "" || strings.HasPrefix(l, "#")) {
			continue
		}
		if more, ok := strings.CutSuffix(l, `\`); ok {
			cur.WriteString(more)
			cur.WriteByte(' ')
			continue
		}
		cur.WriteString(l)
		c := cur.String()
		cur.Reset()
		if rest, ok := strings.CutPrefix(c, "go run ./cmd/ingest "); ok {
			c = "ingest " + rest
		}
		out = append(out, c)
	}
	return out
}

func runCommand(t *testing.T, where, command, dir string, env []string) {
	t.Helper()
	name := strings.Fields(command)[0]
	if _, err := exec.LookPath(name); err != nil && name != "ingest" {
		t.Logf("%s: skipped, %s is not installed: %s", where, name, command)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", command)
	cmd.Dir, cmd.Env = dir, env
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("%s: %s: %v\n%s", where, command, err, out)
		return
	}
	t.Logf("%s: ok in %v: %s", where, time.Since(start).Round(time.Millisecond), command)
}
