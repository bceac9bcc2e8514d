package userimport

// Column is a field of a PlatformUser's spec that a spreadsheet can carry.
type Column string

// The columns, named as the spec fields, in the order export writes them.
const (
	ColEmail       Column = "email"
	ColGivenName   Column = "givenName"
	ColFamilyName  Column = "familyName"
	ColPhone       Column = "phone"
	ColCountry     Column = "country"
	ColPostalCode  Column = "postalCode"
	ColTimeZone    Column = "timeZone"
	ColRole        Column = "role"
	ColActive      Column = "active"
	ColLicensePool Column = "licensePool"
)

// Columns lists every column in export order.
var Columns = []Column{ColEmail, ColGivenName, ColFamilyName, ColPhone, ColCountry, ColPostalCode, ColTimeZone, ColRole, ColActive, ColLicensePool}

// required are the columns a file must have: the spec's required fields.
var required = []Column{ColEmail, ColGivenName, ColFamilyName}

// headerNames are the headers, folded, that mean each column: the spec field
// name, its French name as DESIGN.md gives it, and what spreadsheets commonly
// call it.
var headerNames = map[Column][]string{
	ColEmail:       {"email", "courriel", "mail", "adressemail", "adresseemail", "adressecourriel", "adresseelectronique", "emailaddress"},
	ColGivenName:   {"givenname", "prenom", "firstname"},
	ColFamilyName:  {"familyname", "nom", "lastname", "surname", "nomdefamille"},
	ColPhone:       {"phone", "telephone", "tel", "phonenumber", "numerodetelephone"},
	ColCountry:     {"country", "pays"},
	ColPostalCode:  {"postalcode", "codepostal", "cp", "zip", "zipcode", "postcode"},
	ColTimeZone:    {"timezone", "fuseauhoraire", "fuseau"},
	ColRole:        {"role"},
	ColActive:      {"active", "actif", "enabled"},
	ColLicensePool: {"licensepool", "pool", "pooldelicences"},
}

var columnOfHeader = func() map[string]Column {
	m := map[string]Column{}
	for c, names := range headerNames {
		for _, n := range names {
			m[n] = c
		}
	}
	return m
}()

// columnOf is the column a header means, if any.
func columnOf(header string) (Column, bool) {
	c, ok := columnOfHeader[fold(header)]
	return c, ok
}

// frenchHeader is the header a French speaker would look for, for messages.
var frenchHeader = map[Column]string{
	ColEmail: "courriel", ColGivenName: "prénom", ColFamilyName: "nom", ColPhone: "téléphone",
	ColCountry: "pays", ColPostalCode: "code postal", ColTimeZone: "fuseau horaire", ColRole: "rôle",
	ColActive: "actif", ColLicensePool: "pool",
}
