package userimport

import (
	"bytes"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
	encunicode "golang.org/x/text/encoding/unicode"
	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"
)

// Encoding names how a file was written.
type Encoding string

// The encodings spreadsheets export CSV in.
const (
	UTF8        Encoding = "UTF-8"
	UTF8BOM     Encoding = "UTF-8 with BOM"
	UTF16       Encoding = "UTF-16"
	Windows1252 Encoding = "Windows-1252"
)

// decode turns the bytes of a file into text. Excel in French locales writes
// Windows-1252, LibreOffice and Google Sheets UTF-8 (LibreOffice with a BOM
// when asked), Excel's "Unicode text" UTF-16 with a BOM. Without a BOM, text
// that is valid UTF-8 is taken as UTF-8: Windows-1252 text with accents is
// almost never valid UTF-8, and pure ASCII is the same in both.
func decode(data []byte) (string, Encoding) {
	switch {
	case bytes.HasPrefix(data, []byte{0xEF, 0xBB, 0xBF}):
		return string(data[3:]), UTF8BOM
	case bytes.HasPrefix(data, []byte{0xFF, 0xFE}), bytes.HasPrefix(data, []byte{0xFE, 0xFF}):
		dec := encunicode.UTF16(encunicode.BigEndian, encunicode.ExpectBOM).NewDecoder()
		if out, err := dec.Bytes(data); err == nil {
			return string(out), UTF16
		}
	case utf8.Valid(data):
		return string(data), UTF8
	}
	// Windows-1252 maps every byte to a character, so this cannot fail.
	out, _ := charmap.Windows1252.NewDecoder().Bytes(data)
	return string(out), Windows1252
}

// detectSeparator picks the separator of the header line: the one of `,`, `;`
// and tab that occurs most often outside quotes (`,` when none does, as for a
// file of one column).
func detectSeparator(text string) rune {
	counts := map[rune]int{}
	quoted := false
	for _, r := range text {
		if r == '"' {
			quoted = !quoted
			continue
		}
		if quoted {
			continue
		}
		if r == '\n' {
			break
		}
		if r == ',' || r == ';' || r == '\t' {
			counts[r]++
		}
	}
	best := ','
	for _, r := range []rune{';', '\t'} {
		if counts[r] > counts[best] {
			best = r
		}
	}
	return best
}

// fold reduces a header or a value to what people mean by it: lower case,
// without accents, spaces or punctuation ("Code postal" and "code_postal" are
// "codepostal", "Rôle" is "role", "Côte d’Ivoire" is "cotedivoire").
func fold(s string) string {
	t := transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC)
	out, _, err := transform.String(t, s)
	if err != nil {
		out = s
	}
	var b strings.Builder
	for _, r := range out {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}
