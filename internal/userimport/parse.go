// Package userimport reads the spreadsheets administrators keep their users
// in (CSV as Excel, LibreOffice and Google Sheets export it, headers and
// values in English or French) into PlatformUser specs, checking every row as
// the API server would, and writes users back as CSV.
package userimport

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"

	v1 "visio.dev/operator/api/v1alpha1"
)

// Row is one user of the file.
type Row struct {
	// Line is the row's line in the file, counting the header as line 1.
	Line int
	// Spec holds the row's values for the columns the file has; the others are
	// empty (see Sheet.Desired).
	Spec v1.PlatformUserSpec
}

// Problem is why a row, or the file, cannot be imported.
type Problem struct {
	Line int
	// Column is the header as written in the file, or the column's name when
	// the file lacks it.
	Column  string
	Message string
}

func (p Problem) String() string { return fmt.Sprintf("line %d: %s: %s", p.Line, p.Column, p.Message) }

// Sheet is a parsed file.
type Sheet struct {
	Encoding  Encoding
	Separator rune
	// Has tells which columns the file has.
	Has map[Column]bool
	// Ignored are the headers of the columns that mean nothing here
	// ("Civilité", "Fonction"...), in file order.
	Ignored []string
	// Rows are the rows to import, in file order: none when there is a problem.
	Rows     []Row
	Problems []Problem
}

// Parse reads a CSV file: detects its encoding and separator, matches its
// header, and checks every row. It reports every problem it finds rather than
// the first one, so that a spreadsheet is fixed in one go.
func Parse(data []byte) *Sheet {
	text, enc := decode(data)
	s := &Sheet{Encoding: enc, Has: map[Column]bool{}}
	firstLine := 1
	// Excel honours, and some tools write, a first line "sep=;".
	if rest, ok := strings.CutPrefix(text, "sep="); ok && len(rest) > 0 && strings.ContainsRune(",;\t", rune(rest[0])) {
		s.Separator = rune(rest[0])
		if i := strings.IndexByte(rest, '\n'); i >= 0 {
			text = rest[i+1:]
		} else {
			text = ""
		}
		firstLine = 2
	} else {
		s.Separator = detectSeparator(text)
	}

	r := csv.NewReader(strings.NewReader(text))
	r.Comma = s.Separator
	r.FieldsPerRecord = -1
	r.LazyQuotes = true
	r.ReuseRecord = false

	header, err := r.Read()
	if err != nil {
		msg := "the file is empty: it needs a header row (email, givenName, familyName...)"
		if !errors.Is(err, io.EOF) {
			msg = "cannot read the header: " + csvMessage(err)
		}
		s.Problems = append(s.Problems, Problem{Line: firstLine, Column: "header", Message: msg})
		return s
	}
	headerLine := firstLine
	index := s.matchHeader(header, headerLine)

	seen := map[string]int{} // email → line
	for {
		record, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line, _ := r.FieldPos(0)
		line += firstLine - 1
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				line = pe.Line + firstLine - 1
			}
			s.Problems = append(s.Problems, Problem{Line: line, Column: "file", Message: "cannot read the row: " + csvMessage(err)})
			break
		}
		for i := range record {
			record[i] = strings.TrimSpace(record[i])
		}
		if blank(record) {
			continue
		}
		row, problems := s.parseRow(record, index, line)
		if row.Spec.Email != "" {
			if first, dup := seen[row.Spec.Email]; dup {
				problems = append(problems, Problem{Line: line, Column: index.header(ColEmail),
					Message: fmt.Sprintf("%s is also on line %d: one row per user", row.Spec.Email, first)})
			} else {
				seen[row.Spec.Email] = line
			}
		}
		if len(problems) > 0 {
			s.Problems = append(s.Problems, problems...)
			continue
		}
		s.Rows = append(s.Rows, row)
	}
	if len(s.Problems) > 0 {
		s.Rows = nil // nothing is imported from a file with a problem
	}
	return s
}

// columnIndex is where each column is in a record, and its header there.
type columnIndex struct {
	pos     map[Column]int
	headers map[Column]string
}

func (c columnIndex) header(col Column) string {
	if h, ok := c.headers[col]; ok {
		return h
	}
	return string(col)
}

func (c columnIndex) cell(record []string, col Column) (string, bool) {
	i, ok := c.pos[col]
	if !ok {
		return "", false
	}
	if i >= len(record) {
		return "", true
	}
	return record[i], true
}

func (s *Sheet) matchHeader(header []string, line int) columnIndex {
	idx := columnIndex{pos: map[Column]int{}, headers: map[Column]string{}}
	for i, h := range header {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		col, ok := columnOf(h)
		if !ok {
			s.Ignored = append(s.Ignored, h)
			continue
		}
		if prev, dup := idx.headers[col]; dup {
			s.Problems = append(s.Problems, Problem{Line: line, Column: h,
				Message: fmt.Sprintf("the same column as %q (%s): keep one of them", prev, col)})
			continue
		}
		idx.pos[col], idx.headers[col] = i, h
		s.Has[col] = true
	}
	for _, col := range required {
		if !s.Has[col] {
			s.Problems = append(s.Problems, Problem{Line: line, Column: string(col),
				Message: fmt.Sprintf("missing column: the file needs a column %q (or %q)", col, frenchHeader[col])})
		}
	}
	return idx
}

// parseRow checks each cell of a record as the API server would.
func (s *Sheet) parseRow(record []string, idx columnIndex, line int) (Row, []Problem) {
	row := Row{Line: line}
	var problems []Problem
	check := func(col Column, msg string) {
		if msg != "" {
			problems = append(problems, Problem{Line: line, Column: idx.header(col), Message: msg})
		}
	}
	var msg string
	if v, ok := idx.cell(record, ColEmail); ok {
		row.Spec.Email, msg = parseEmail(v)
		check(ColEmail, msg)
	}
	if v, ok := idx.cell(record, ColGivenName); ok {
		row.Spec.GivenName, msg = parseName(v)
		check(ColGivenName, msg)
	}
	if v, ok := idx.cell(record, ColFamilyName); ok {
		row.Spec.FamilyName, msg = parseName(v)
		check(ColFamilyName, msg)
	}
	if v, ok := idx.cell(record, ColCountry); ok && v != "" {
		row.Spec.Country, msg = parseCountry(v)
		check(ColCountry, msg)
	}
	if v, ok := idx.cell(record, ColPhone); ok && v != "" {
		row.Spec.Phone, msg = parsePhone(v, row.Spec.Country)
		check(ColPhone, msg)
	}
	if v, ok := idx.cell(record, ColPostalCode); ok && v != "" {
		row.Spec.PostalCode, msg = parsePostalCode(v)
		check(ColPostalCode, msg)
	}
	if v, ok := idx.cell(record, ColTimeZone); ok && v != "" {
		row.Spec.TimeZone, msg = parseTimeZone(v)
		check(ColTimeZone, msg)
	}
	if v, ok := idx.cell(record, ColRole); ok {
		row.Spec.Role = v1.RoleUser
		if v != "" {
			row.Spec.Role, msg = parseRole(v)
			check(ColRole, msg)
		}
	}
	if v, ok := idx.cell(record, ColActive); ok {
		active := true
		if v != "" {
			active, msg = parseActive(v)
			check(ColActive, msg)
		}
		row.Spec.Active = &active
	}
	if v, ok := idx.cell(record, ColLicensePool); ok {
		row.Spec.LicensePool = v1.DefaultLicensePool
		if v != "" {
			row.Spec.LicensePool, msg = parseLicensePool(v)
			check(ColLicensePool, msg)
		}
	}
	return row, problems
}

func blank(record []string) bool {
	for _, c := range record {
		if c != "" {
			return false
		}
	}
	return true
}

// csvMessage is a csv error without its position, which the Problem carries.
func csvMessage(err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
