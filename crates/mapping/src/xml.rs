//! XML bodies for providers whose API speaks XML (`body_format: xml`): an answer is read into
//! JSON before any expression sees it, and a request body built as JSON is written out as XML,
//! both by one convention (the one Python's xmltodict made common), so a mapping reads and
//! builds XML as JSON. This module owns the conversion only; which providers use it is the
//! mapping file's business.
//!
//! - The document is an object with one key, the root element's name.
//! - An element with neither attributes nor child elements is its text (`null` when empty).
//! - Any other element is an object: attributes as `@name`, child elements under their name
//!   (an array when the name repeats), non-blank text as `#text`.
//! - Names are local names: a namespace prefix is dropped (`soap:Body` → `Body`). Comments and
//!   processing instructions are skipped; a DTD is refused (no entity expansion, no XXE).
//!
//! Writing reverses it: `@name` keys become attributes, `#text` the text, arrays repeated
//! elements, `null` an empty element, other scalars their text; every value is escaped.

use serde_json::{Map, Value};

/// An XML document as JSON.
pub fn read_xml(text: &str) -> Result<Value, String> {
    let document = roxmltree::Document::parse(text).map_err(|error| error.to_string())?;
    let root = document.root_element();
    let mut top = Map::new();
    top.insert(root.tag_name().name().to_owned(), element_value(root));
    Ok(Value::Object(top))
}

fn element_value(node: roxmltree::Node<'_, '_>) -> Value {
    let mut object = Map::new();
    for attribute in node.attributes() {
        object.insert(
            format!("@{}", attribute.name()),
            Value::String(attribute.value().to_owned()),
        );
    }
    let mut text = String::new();
    for child in node.children() {
        if child.is_element() {
            let value = element_value(child);
            match object.get_mut(child.tag_name().name()) {
                Some(Value::Array(items)) => items.push(value),
                Some(single) => {
                    let first = single.take();
                    *single = Value::Array(vec![first, value]);
                }
                None => {
                    object.insert(child.tag_name().name().to_owned(), value);
                }
            }
        } else if child.is_text() {
            text.push_str(child.text().unwrap_or_default());
        }
    }
    let text = text.trim();
    if object.is_empty() {
        return match text {
            "" => Value::Null,
            text => Value::String(text.to_owned()),
        };
    }
    if !text.is_empty() {
        object.insert("#text".to_owned(), Value::String(text.to_owned()));
    }
    Value::Object(object)
}

/// A JSON value as an XML document: it must be an object with exactly one key, the root.
pub fn write_xml(value: &Value) -> Result<String, String> {
    let root = match value {
        Value::Object(object) if object.len() == 1 => object.iter().next(),
        _ => None,
    };
    let Some((name, content)) = root else {
        return Err("an XML body must be an object with one key, the root element".to_owned());
    };
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    write_element(&mut out, name, content)?;
    Ok(out)
}

fn write_element(out: &mut String, name: &str, value: &Value) -> Result<(), String> {
    if let Value::Array(items) = value {
        for item in items {
            if item.is_array() {
                return Err(format!("`{name}`: an array of arrays has no XML form"));
            }
            write_element(out, name, item)?;
        }
        return Ok(());
    }
    check_name(name)?;
    out.push('<');
    out.push_str(name);
    let Value::Object(object) = value else {
        return match scalar_text(value) {
            None => {
                out.push_str("/>");
                Ok(())
            }
            Some(text) => {
                out.push('>');
                escape_into(out, &text);
                close(out, name);
                Ok(())
            }
        };
    };
    for (key, attribute) in object {
        if let Some(attribute_name) = key.strip_prefix('@') {
            check_name(attribute_name)?;
            let Some(text) = scalar_text(attribute) else {
                // An absent attribute is left out, so optional context values need no test.
                if attribute.is_null() {
                    continue;
                }
                return Err(format!("`{name}.{key}`: an attribute must be a scalar"));
            };
            out.push(' ');
            out.push_str(attribute_name);
            out.push_str("=\"");
            escape_into(out, &text);
            out.push('"');
        }
    }
    let mut content = String::new();
    for (key, child) in object {
        if key == "#text" {
            if let Some(text) = scalar_text(child) {
                escape_into(&mut content, &text);
            }
        } else if !key.starts_with('@') {
            write_element(&mut content, key, child)?;
        }
    }
    if content.is_empty() {
        out.push_str("/>");
    } else {
        out.push('>');
        out.push_str(&content);
        close(out, name);
    }
    Ok(())
}

fn close(out: &mut String, name: &str) {
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Number(number) => Some(number.to_string()),
        Value::Array(_) | Value::Object(_) => Some(value.to_string()),
    }
}

/// Names are checked, not escaped: a name with markup in it would change the document.
fn check_name(name: &str) -> Result<(), String> {
    let valid = name
        .chars()
        .next()
        .is_some_and(|first| first.is_alphabetic() || first == '_')
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if valid {
        Ok(())
    } else {
        Err(format!("`{name}` is not an XML name"))
    }
}

/// `text` as it appears in an XML attribute or element written here.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text);
    out
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_attributes_text_and_repeated_elements_as_xmltodict_does() {
        let text = r#"<?xml version="1.0" encoding="UTF-8"?>
<response success="true">
  <output>
    <users>
      <user id="1" login="ann@acme.test" name="Ann &amp; Co"><subscriptions/></user>
      <user id="2" login="bob@acme.test"/>
    </users>
    <note lang="en">two <![CDATA[<users>]]></note>
    <empty/>
    <!-- skipped -->
  </output>
</response>"#;
        assert_eq!(
            read_xml(text).unwrap(),
            json!({"response": {"@success": "true", "output": {
                "users": {"user": [
                    {"@id": "1", "@login": "ann@acme.test", "@name": "Ann & Co", "subscriptions": null},
                    {"@id": "2", "@login": "bob@acme.test"}
                ]},
                "note": {"@lang": "en", "#text": "two <users>"},
                "empty": null
            }}})
        );
    }

    #[test]
    fn a_single_child_stays_an_object_and_namespaces_are_dropped() {
        let text = r#"<s:Envelope xmlns:s="urn:x"><s:Body><user id="7"/></s:Body></s:Envelope>"#;
        assert_eq!(
            read_xml(text).unwrap(),
            json!({"Envelope": {"Body": {"user": {"@id": "7"}}}})
        );
    }

    #[test]
    fn refuses_a_dtd_and_broken_documents() {
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xx">]><a>&x;</a>"#;
        assert!(read_xml(bomb).is_err());
        assert!(read_xml("<a><b></a>").is_err());
        assert!(read_xml("{\"not\": \"xml\"}").is_err());
    }

    #[test]
    fn writes_attributes_children_and_escapes_every_value() {
        let body = json!({"call": {
            "@method": "exportUsers",
            "@callerName": "unigate",
            "credentials": {"@login": "a\"b<c>&'d", "@password": "p", "@instanceCode": null},
            "include": {"@groups": true},
            "id": [1, 2],
            "note": {"@lang": "en", "#text": "x < y"},
            "empty": null
        }});
        assert_eq!(
            write_xml(&body).unwrap(),
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?>"#,
                r#"<call method="exportUsers" callerName="unigate">"#,
                r#"<credentials login="a&quot;b&lt;c&gt;&amp;&apos;d" password="p"/>"#,
                r#"<include groups="true"/><id>1</id><id>2</id>"#,
                r#"<note lang="en">x &lt; y</note><empty/></call>"#
            )
        );
    }

    #[test]
    fn refuses_bodies_without_one_root_and_names_with_markup() {
        assert!(write_xml(&json!({"a": 1, "b": 2})).is_err());
        assert!(write_xml(&json!("text")).is_err());
        assert!(write_xml(&json!({"a b": 1})).is_err());
        assert!(write_xml(&json!({"a": {"@x y": 1}})).is_err());
    }

    #[test]
    fn what_it_writes_reads_back_the_same() {
        let body = json!({"call": {"@m": "x", "user": [{"@id": "1"}, {"@id": "2"}], "t": "v"}});
        assert_eq!(read_xml(&write_xml(&body).unwrap()).unwrap(), body);
    }
}
