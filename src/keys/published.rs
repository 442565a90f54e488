//! Key values published in test vectors (copied from the project's shared vectors,
//! `vectors.json`, each with the vector it comes from). Production refuses a key store holding
//! any of them: a published key protects nothing.

/// (value hex, the published vector that uses it).
pub const PUBLISHED_KEYS: &[(&str, &str)] = &[
    (
        "0123456789ABCDEFFEDCBA9876543210",
        "Visa CVV classic example (CVV1)",
    ),
    ("99999999999999998888888888888888", "psec CVV unit test"),
    (
        "AB9292288227277226252525224665FE",
        "ISO-0 encrypted under 3DES (neapay-checked)",
    ),
    (
        "AF8CB133A78F8DC2D1359F18527593FB",
        "ISO-4 encipher key=AF8CB133..",
    ),
    (
        "D30BDC73EC9714B000BEC66BDB7B6D09",
        "ISO-4 encipher key=D30BDC73..",
    ),
    (
        "7D69F01F3B45449F62C7816ECE723268",
        "ISO-4 encipher key=7D69F01F..",
    ),
    (
        "00112233445566778899AABBCCDDEEFF",
        "ISO-4 decipher psec docstring",
    ),
    ("FEDCBA98765432100123456789ABCDEF", "3DES KCV of FEDC..CDEF"),
    (
        "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB",
        "ARQC docstring (CDOL1 minimum data)",
    ),
    (
        "7962D9ECE03D1ACD4C76089DCE131543",
        "ISO 9797-1 MAC alg 3 (retail MAC), ICAO 9303 BAC worked example M_IFD",
    ),
    (
        "2B7E151628AED2A6ABF7158809CF4F3C",
        "AES-CMAC RFC 4493 empty",
    ),
    (
        "100102030405060708090A0B0C0D0E0F",
        "SCP02 mutual auth + C-MAC wrap (i=55 style, ICV encryption)",
    ),
    (
        "101102030405060708090A0B0C0D0E0F",
        "SCP02 mutual auth + C-MAC wrap (i=55 style, ICV encryption)",
    ),
    (
        "102102030405060708090A0B0C0D0E0F",
        "SCP02 mutual auth + C-MAC wrap (i=55 style, ICV encryption)",
    ),
    (
        "404142434445464748494A4B4C4D4E4F",
        "SCP02 mutual auth i=15 + C-MAC GET STATUS (GPShell)",
    ),
    ("000102030405060708090A0B0C0D0E0F", "SCP03 AES128 S8 SL=11"),
    ("101112131415161718191A1B1C1D1E1F", "SCP03 AES128 S8 SL=11"),
    (
        "000102030405060708090A0B0C0D0E0F0001020304050607",
        "SCP03 AES192 S8 SL=11",
    ),
    (
        "101112131415161718191A1B1C1D1E1F1011121314151617",
        "SCP03 AES192 S8 SL=11",
    ),
    (
        "000102030405060708090A0B0C0D0E0F000102030405060708090A0B0C0D0E0F",
        "SCP03 AES256 S8 SL=11",
    ),
    (
        "101112131415161718191A1B1C1D1E1F101112131415161718191A1B1C1D1E1F",
        "SCP03 AES256 S8 SL=11",
    ),
    (
        "F995D0A069335C7DF42E590317FFEA6D",
        "SCP03 mutual auth (GPShell), SL=03",
    ),
    (
        "58563362EC5A4541ABCD32B34B1EAE7D",
        "SCP03 mutual auth (GPShell), SL=03",
    ),
    (
        "404142434445464748494A4B4C4D4E4F5051525354555657",
        "GPPro KDF3 diversification AES-192",
    ),
    (
        "404142434445464748494A4B4C4D4E4F505152535455565758595A5B5C5D5E5F",
        "GPPro KDF3 diversification AES-256",
    ),
    (
        "8C72C72CF908411653018807950D82FBAD947562F0828A0B10B8B9606ABF3BCD",
        "GPPro KDF3 external vector (AES-256)",
    ),
];
