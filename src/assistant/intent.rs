//! Recognises a customer asking for a person, in English or Indonesian, without calling a model:
//! that request must be honoured at once, even when the model is down or the quota is spent.

/// Single words that, on their own in a short message or next to a request verb, mean "a person".
const PERSON_WORDS: &[&str] = &[
    "agent",
    "human",
    "operator",
    "person",
    "cs",
    "staff",
    "representative",
    "manusia",
    "admin",
    "petugas",
    "orang",
    "karyawan",
    "pegawai",
    "manager",
    "manajer",
];

/// Phrases that ask for a person wherever they appear.
const PERSON_PHRASES: &[&str] = &[
    "customer service",
    "customer care",
    "customer support",
    "real person",
    "live agent",
    "live chat",
    "talk to someone",
    "speak to someone",
    "talk to a person",
    "speak to a person",
    "talk to a human",
    "speak to a human",
    "not a bot",
    "bukan bot",
    "orang asli",
    "layanan pelanggan",
    "bicara dengan orang",
    "ngomong sama orang",
    "hubungi cs",
    "sambungkan ke",
    "minta cs",
    "mau cs",
];

/// Verbs that turn a person-word into a request ("can I talk to an agent", "minta admin").
const REQUEST_WORDS: &[&str] = &[
    "talk",
    "speak",
    "connect",
    "transfer",
    "want",
    "need",
    "get",
    "call",
    "contact",
    "reach",
    "chat",
    "minta",
    "mau",
    "ingin",
    "pengen",
    "pingin",
    "bicara",
    "ngomong",
    "hubungi",
    "sambungkan",
    "panggil",
    "tolong",
    "butuh",
    "bisa",
    "please",
    "pls",
    "mohon",
];

fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether the customer is asking for a human.
pub fn wants_human(text: &str) -> bool {
    let lower = text.to_lowercase();
    let normalised: String = words(&lower).join(" ");
    if PERSON_PHRASES.iter().any(|p| normalised.contains(p)) {
        return true;
    }
    let ws = words(&lower);
    let has_person = ws.iter().any(|w| PERSON_WORDS.contains(&w.as_str()));
    if !has_person {
        return false;
    }
    // "agent", "CS please", "manusia!": a very short message naming a person is a request.
    if ws.len() <= 3 {
        return true;
    }
    ws.iter().any(|w| REQUEST_WORDS.contains(&w.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_requests_are_recognised() {
        for text in [
            "agent",
            "Human please",
            "Can I talk to a real person?",
            "I want to speak to an operator",
            "connect me to customer service",
            "I need a human, this bot is useless",
            "OPERATOR!!",
        ] {
            assert!(wants_human(text), "{text}");
        }
    }

    #[test]
    fn indonesian_requests_are_recognised() {
        for text in [
            "mau bicara dengan CS",
            "minta admin dong",
            "tolong sambungkan ke petugas",
            "saya ingin ngomong sama orang",
            "manusia",
            "hubungi cs",
            "bisa chat sama admin?",
        ] {
            assert!(wants_human(text), "{text}");
        }
    }

    #[test]
    fn ordinary_questions_are_not_handoffs() {
        for text in [
            "What time do you open on Sunday?",
            "berapa harga kopi susu?",
            "Do you deliver to Bandung?",
            "terima kasih",
            "Is the human resources office open?",
        ] {
            assert!(!wants_human(text), "{text}");
        }
    }
}
