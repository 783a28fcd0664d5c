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

/// Words that on their own show anger or a complaint. Exact words only ("laporan" is not
/// "lapor"), and none that is also an everyday noun (no "anjing": customers ask about dogs).
const COMPLAINT_WORDS: &[&str] = &[
    "complaint",
    "complain",
    "complaining",
    "angry",
    "furious",
    "outraged",
    "terrible",
    "horrible",
    "awful",
    "worst",
    "unacceptable",
    "ridiculous",
    "disgusting",
    "pathetic",
    "incompetent",
    "disappointed",
    "disappointing",
    "scam",
    "scammed",
    "fraud",
    "cheated",
    "ripoff",
    "lawyer",
    "wtf",
    "fuck",
    "fucking",
    "shit",
    "bullshit",
    "komplain",
    "keluhan",
    "mengeluh",
    "kecewa",
    "mengecewakan",
    "marah",
    "kesal",
    "kesel",
    "jengkel",
    "penipu",
    "penipuan",
    "nipu",
    "ditipu",
    "tipu",
    "bohong",
    "pembohong",
    "payah",
    "goblok",
    "tolol",
    "bego",
    "brengsek",
    "sialan",
    "bangsat",
    "kampret",
    "somasi",
];

/// Phrases of complaint whose words alone are ordinary. A refund request alone is not here: the
/// model decides those (with its handoff tool), as the prompt tells it.
const COMPLAINT_PHRASES: &[&str] = &[
    "bad service",
    "poor service",
    "very bad",
    "so bad",
    "rip off",
    "not acceptable",
    "waste of time",
    "report you",
    "pelayanan buruk",
    "pelayanan jelek",
    "layanan buruk",
    "layanan jelek",
    "tidak becus",
    "gak becus",
    "nggak becus",
    "ga becus",
    "buang waktu",
    "mau lapor",
    "saya laporkan",
    "parah banget",
    "parah sekali",
];

/// The anger or complaint word or phrase in the customer's message, if any. A person should
/// answer an upset customer: no model is asked, so it works when the model is down too.
pub fn complaint_keyword(text: &str) -> Option<&'static str> {
    let ws = words(text);
    let normalised = ws.join(" ");
    if let Some(p) = COMPLAINT_PHRASES
        .iter()
        .find(|p| contains_phrase(&normalised, p))
    {
        return Some(p);
    }
    COMPLAINT_WORDS
        .iter()
        .find(|w| ws.iter().any(|x| x == *w))
        .copied()
}

/// Phrases saying the assistant's answer did not help.
const UNHELPFUL_PHRASES: &[&str] = &[
    "not helpful",
    "unhelpful",
    "doesn t help",
    "does not help",
    "didn t help",
    "did not help",
    "no help",
    "useless",
    "not what i asked",
    "not what i m asking",
    "you don t understand",
    "you do not understand",
    "you didn t answer",
    "you did not answer",
    "answer my question",
    "makes no sense",
    "doesn t make sense",
    "tidak membantu",
    "tdk membantu",
    "gak membantu",
    "ga membantu",
    "gk membantu",
    "nggak membantu",
    "enggak membantu",
    "kurang membantu",
    "bukan itu",
    "tidak nyambung",
    "gak nyambung",
    "ga nyambung",
    "nggak nyambung",
    "tidak menjawab",
    "gak jawab",
    "ga jawab",
    "nggak jawab",
    "jawab pertanyaan saya",
    "percuma",
];

/// Whether the customer says the assistant's answer did not help.
pub fn says_unhelpful(text: &str) -> bool {
    let normalised = words(text).join(" ");
    UNHELPFUL_PHRASES
        .iter()
        .any(|p| contains_phrase(&normalised, p))
}

/// Whether `question` asks again what one of `earlier` (questions the assistant already
/// answered) asked: the same words, or nearly (four in five shared), ignoring case and
/// punctuation. Very short messages ("ok", "halo") never count as a repeat.
pub fn is_repeat(question: &str, earlier: &[String]) -> bool {
    let q = words(question);
    if q.len() < 2 || q.join(" ").len() < 8 {
        return false;
    }
    let q_set: std::collections::BTreeSet<&str> = q.iter().map(String::as_str).collect();
    earlier.iter().any(|e| {
        let e = words(e);
        if e == q {
            return true;
        }
        let e_set: std::collections::BTreeSet<&str> = e.iter().map(String::as_str).collect();
        let shared = q_set.intersection(&e_set).count();
        let all = q_set.union(&e_set).count();
        q_set.len() >= 3 && all > 0 && shared * 5 >= all * 4
    })
}

/// Words that, in a short message, ask for the assistant back from a person.
const ASSISTANT_WORDS: &[&str] = &["bot", "chatbot", "robot", "assistant", "asisten"];

/// Phrases that ask for the assistant back anywhere in a message.
const ASSISTANT_PHRASES: &[&str] = &[
    "back to the bot",
    "back to bot",
    "back to the assistant",
    "talk to the bot",
    "talk to the assistant",
    "kembali ke bot",
    "balik ke bot",
    "kembali ke asisten",
    "balik ke asisten",
    "ngobrol sama bot",
    "sama bot aja",
    "pakai bot",
];

/// Whether the customer asks for the assistant back ("bot", "kembali ke bot").
pub fn wants_assistant(text: &str) -> bool {
    if wants_human(text) {
        // "not a bot", "bukan bot": the opposite.
        return false;
    }
    let ws = words(text);
    let normalised = ws.join(" ");
    if ASSISTANT_PHRASES
        .iter()
        .any(|p| contains_phrase(&normalised, p))
    {
        return true;
    }
    ws.len() <= 3 && ws.iter().any(|w| ASSISTANT_WORDS.contains(&w.as_str()))
}

/// Whether `phrase` occurs in `normalised` on word boundaries.
fn contains_phrase(normalised: &str, phrase: &str) -> bool {
    let padded = format!(" {normalised} ");
    padded.contains(&format!(" {phrase} "))
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

    #[test]
    fn anger_and_complaints_are_recognised_in_both_languages() {
        for (text, keyword) in [
            ("This is the worst service ever", "worst"),
            ("I want to file a complaint", "complaint"),
            ("I'm really angry, my order never came", "angry"),
            ("bad service, very disappointed", "bad service"),
            ("saya mau komplain", "komplain"),
            ("kecewa banget sama pesanan saya", "kecewa"),
            ("pelayanan buruk sekali", "pelayanan buruk"),
            ("kalian penipu!", "penipu"),
            ("admin tidak becus", "tidak becus"),
            ("KESEL BANGET", "kesel"),
        ] {
            assert_eq!(complaint_keyword(text), Some(keyword), "{text}");
        }
    }

    #[test]
    fn ordinary_messages_are_not_complaints() {
        for text in [
            "What time do you open on Sunday?",
            "boleh bawa anjing ke outlet?",
            "saya mau kirim laporan pembayaran",
            "is the terrace open?",
            "berapa harga es kopi susu?",
            "Thanks, that was helpful!",
            "My latte was cold, I want my money back",
        ] {
            assert_eq!(complaint_keyword(text), None, "{text}");
        }
    }

    #[test]
    fn unhelpful_answers_are_recognised() {
        for text in [
            "that's not helpful",
            "This doesn't help at all",
            "you didn't answer my question",
            "jawabannya tidak membantu",
            "bukan itu maksud saya",
            "gak nyambung kak",
        ] {
            assert!(says_unhelpful(text), "{text}");
        }
        for text in [
            "very helpful, thanks",
            "terima kasih, membantu sekali",
            "itu bukanlah masalah",
        ] {
            assert!(!says_unhelpful(text), "{text}");
        }
    }

    #[test]
    fn repeated_questions_are_recognised() {
        let earlier = vec!["Do you deliver to Bandung?".to_string()];
        assert!(is_repeat("do you deliver to bandung", &earlier));
        assert!(is_repeat("Do you deliver to Bandung??", &earlier));
        assert!(!is_repeat("Do you deliver to Jakarta and Bogor?", &earlier));
        assert!(!is_repeat("ok", &["ok".to_string()]));
        assert!(!is_repeat("anything", &[]));
    }

    #[test]
    fn asking_for_the_assistant_back() {
        for text in [
            "bot",
            "Bot please",
            "kembali ke bot",
            "assistant",
            "balik ke bot aja",
            "I want to go back to the bot",
        ] {
            assert!(wants_assistant(text), "{text}");
        }
        for text in [
            "not a bot please",
            "bukan bot",
            "I was talking to your bot earlier about my order and it said the wrong price",
            "hello",
        ] {
            assert!(!wants_assistant(text), "{text}");
        }
    }
}
