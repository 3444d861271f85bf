//! HTML character references (the subset mail bodies use), for [`super::html::html_to_text`].

/// Decodes the entity at the start of `text` (which begins with `&`). Returns the character, or
/// `None` for a lone `&`, and the number of bytes consumed.
pub(super) fn decode_entity(text: &[u8]) -> (Option<char>, usize) {
    // The longest entity we know is 8 letters; numeric ones are at most `&#x10FFFF;`.
    let window = text.get(1..text.len().min(12)).unwrap_or_default();
    let Some(semicolon) = window.iter().position(|&b| b == b';') else {
        return (None, 1);
    };
    let body = window.get(..semicolon).unwrap_or_default();
    let consumed = semicolon + 2;
    let decoded = match body {
        [b'#', b'x' | b'X', hex @ ..] => parse_code_point(hex, 16),
        [b'#', decimal @ ..] => parse_code_point(decimal, 10),
        name => named_entity(name),
    };
    match decoded {
        Some(c) => (Some(c), consumed),
        None => (None, 1),
    }
}

fn parse_code_point(digits: &[u8], radix: u32) -> Option<char> {
    let text = std::str::from_utf8(digits).ok()?;
    let value = u32::from_str_radix(text, radix).ok()?;
    match value {
        0 => Some('\u{fffd}'),
        _ => char::from_u32(value).or(Some('\u{fffd}')),
    }
}

fn named_entity(name: &[u8]) -> Option<char> {
    let c = match name {
        b"amp" | b"AMP" => '&',
        b"lt" | b"LT" => '<',
        b"gt" | b"GT" => '>',
        b"quot" | b"QUOT" => '"',
        b"apos" => '\'',
        b"nbsp" => ' ',
        b"ensp" | b"emsp" | b"thinsp" => ' ',
        b"zwnj" | b"zwj" | b"shy" => '\u{200b}',
        b"copy" => '©',
        b"reg" => '®',
        b"trade" => '™',
        b"euro" => '€',
        b"pound" => '£',
        b"yen" => '¥',
        b"cent" => '¢',
        b"sect" => '§',
        b"deg" => '°',
        b"plusmn" => '±',
        b"times" => '×',
        b"divide" => '÷',
        b"middot" => '·',
        b"bull" => '•',
        b"hellip" => '…',
        b"ndash" => '–',
        b"mdash" => '—',
        b"lsquo" => '‘',
        b"rsquo" => '’',
        b"sbquo" => '‚',
        b"ldquo" => '“',
        b"rdquo" => '”',
        b"bdquo" => '„',
        b"laquo" => '«',
        b"raquo" => '»',
        b"iexcl" => '¡',
        b"iquest" => '¿',
        b"auml" => 'ä',
        b"ouml" => 'ö',
        b"uuml" => 'ü',
        b"Auml" => 'Ä',
        b"Ouml" => 'Ö',
        b"Uuml" => 'Ü',
        b"szlig" => 'ß',
        b"eacute" => 'é',
        b"egrave" => 'è',
        b"ecirc" => 'ê',
        b"Eacute" => 'É',
        b"aacute" => 'á',
        b"agrave" => 'à',
        b"acirc" => 'â',
        b"iacute" => 'í',
        b"oacute" => 'ó',
        b"uacute" => 'ú',
        b"ntilde" => 'ñ',
        b"ccedil" => 'ç',
        _ => return None,
    };
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::decode_entity;

    #[test]
    fn decodes_named_and_numeric_references() {
        assert_eq!(decode_entity(b"&amp;rest"), (Some('&'), 5));
        assert_eq!(decode_entity(b"&#x41;"), (Some('A'), 6));
        assert_eq!(decode_entity(b"&#66;"), (Some('B'), 5));
        assert_eq!(decode_entity(b"&eacute;"), (Some('é'), 8));
    }

    #[test]
    fn leaves_unknown_or_unterminated_references() {
        assert_eq!(decode_entity(b"&bogus;"), (None, 1));
        assert_eq!(decode_entity(b"&amp"), (None, 1));
        assert_eq!(decode_entity(b"&"), (None, 1));
        assert_eq!(decode_entity(b"&#xFFFFFFFFF;"), (None, 1));
    }
}
