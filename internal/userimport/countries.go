package userimport

import (
	"strings"

	"golang.org/x/text/language"
	"golang.org/x/text/language/display"
)

// isoCountries are the ISO 3166-1 alpha-2 codes of the countries: the regions
// golang.org/x/text knows as countries, less the codes it also accepts that
// ISO 3166-1 reserves for other uses or has withdrawn. XK (Kosovo) is kept:
// it is user-assigned but what everyone writes.
var notISOCountry = map[string]bool{
	"AC": true, "AN": true, "BU": true, "CP": true, "CQ": true, "CS": true, "CT": true, "DD": true, "DG": true,
	"DY": true, "EA": true, "EZ": true, "FQ": true, "FX": true, "HV": true, "IC": true, "JT": true, "MI": true,
	"NH": true, "NQ": true, "NT": true, "PC": true, "PU": true, "PZ": true, "RH": true, "SU": true, "TA": true,
	"TP": true, "UK": true, "UN": true, "VD": true, "WK": true, "YD": true, "YU": true, "ZR": true,
}

// countryAliases are the names people write that are not the countries'
// names in CLDR, folded, by hand.
var countryAliases = map[string]string{
	"uk": "GB", "angleterre": "GB", "england": "GB", "grandebretagne": "GB", "greatbritain": "GB",
	"ecosse": "GB", "scotland": "GB", "paysdegalles": "GB", "wales": "GB",
	"usa": "US", "etatsunisdamerique": "US", "unitedstatesofamerica": "US", "america": "US",
	"hollande": "NL", "holland": "NL", "thenetherlands": "NL",
	"ivorycoast": "CI", "reunion": "RE", "laguadeloupe": "GP", "lamartinique": "MQ",
	"coreedusud": "KR", "southkorea": "KR", "republicofkorea": "KR",
	"russie": "RU", "russianfederation": "RU", "tchequie": "CZ", "republiquetcheque": "CZ", "czechrepublic": "CZ",
	"vatican": "VA", "suisse": "CH", "switzerland": "CH",
}

// countries maps folded names, in English and French, and codes to codes.
var countries = func() map[string]string {
	m := map[string]string{}
	en, fr := display.English.Regions(), display.French.Regions()
	for a := 'A'; a <= 'Z'; a++ {
		for b := 'A'; b <= 'Z'; b++ {
			code := string([]rune{a, b})
			r, err := language.ParseRegion(code)
			if err != nil || !r.IsCountry() || r.String() != code || notISOCountry[code] {
				continue
			}
			m[strings.ToLower(code)] = code
			for _, name := range []string{en.Name(r), fr.Name(r)} {
				if f := fold(name); f != "" {
					if _, taken := m[f]; !taken {
						m[f] = code
					}
				}
			}
		}
	}
	for name, code := range countryAliases {
		m[name] = code
	}
	return m
}()

// CountryCode is the ISO 3166-1 alpha-2 code of a country written as a code
// ("fr", "FR") or a name in English or French ("France", "Royaume-Uni",
// "Germany").
func CountryCode(s string) (string, bool) {
	code, ok := countries[fold(s)]
	return code, ok
}
