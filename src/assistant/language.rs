//! The customer's language, for the few sentences the appliance writes itself (holding message,
//! handoff notice). Customers here write Indonesian as often as English; anything else gets English
//! from these fixed texts, while the model itself replies in whatever language the customer used.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    English,
    Indonesian,
}

/// Frequent Indonesian function words and chat forms; rare in English text.
const INDONESIAN_MARKERS: &[&str] = &[
    "yang",
    "saya",
    "aku",
    "tidak",
    "nggak",
    "gak",
    "enggak",
    "apa",
    "apakah",
    "ini",
    "itu",
    "dan",
    "untuk",
    "bisa",
    "ada",
    "mau",
    "berapa",
    "kak",
    "dong",
    "ya",
    "sih",
    "kah",
    "terima",
    "kasih",
    "tolong",
    "minta",
    "dengan",
    "di",
    "ke",
    "dari",
    "jam",
    "buka",
    "tutup",
    "harga",
    "pesan",
    "sudah",
    "belum",
    "kapan",
    "bagaimana",
    "gimana",
    "kenapa",
    "mohon",
    "selamat",
    "pagi",
    "siang",
    "malam",
    "halo",
    "hai",
    "juga",
    "atau",
    "karena",
    "kami",
    "kamu",
    "anda",
    "bapak",
    "ibu",
];

const ENGLISH_MARKERS: &[&str] = &[
    "the", "is", "are", "you", "what", "when", "how", "do", "does", "can", "i", "my", "your",
    "please", "thanks", "thank", "hello", "hi", "open", "price", "order", "where", "which", "and",
    "to", "of", "for", "have", "want", "need",
];

pub fn detect(text: &str) -> Lang {
    let lower = text.to_lowercase();
    let mut id = 0;
    let mut en = 0;
    for word in lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if INDONESIAN_MARKERS.contains(&word) {
            id += 1;
        }
        if ENGLISH_MARKERS.contains(&word) {
            en += 1;
        }
    }
    if id > en {
        Lang::Indonesian
    } else {
        Lang::English
    }
}

/// Sent when the generation API fails, just before the conversation goes to a person.
pub fn holding_message(lang: Lang) -> &'static str {
    match lang {
        Lang::English => "Sorry, I can't answer that right now. I'm passing you to a member of our team, who will reply here shortly.",
        Lang::Indonesian => "Mohon maaf, saya belum bisa menjawab saat ini. Saya teruskan ke tim kami, mereka akan segera membalas di sini.",
    }
}

/// Sent when the conversation is handed to a person for any other reason.
pub fn handoff_notice(lang: Lang) -> &'static str {
    match lang {
        Lang::English => {
            "I'm connecting you with a member of our team. They'll reply here shortly."
        }
        Lang::Indonesian => {
            "Baik, saya sambungkan dengan tim kami. Mereka akan segera membalas di sini."
        }
    }
}

/// Sent when the knowledge base has no answer and the tenant prefers to offer a person.
pub fn dont_know_offer_human(lang: Lang) -> &'static str {
    match lang {
        Lang::English => "Sorry, I don't know the answer to that. Would you like me to connect you with a member of our team? Just reply \"agent\".",
        Lang::Indonesian => "Mohon maaf, saya belum tahu jawabannya. Mau saya sambungkan dengan tim kami? Balas saja \"admin\".",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offered_reply_word_reaches_a_person() {
        for (lang, word) in [(Lang::English, "agent"), (Lang::Indonesian, "admin")] {
            assert!(dont_know_offer_human(lang).contains(&format!("\"{word}\"")));
            assert!(crate::assistant::intent::wants_human(word));
        }
    }

    #[test]
    fn detects_indonesian_and_english() {
        assert_eq!(detect("berapa harga kopi susu kak?"), Lang::Indonesian);
        assert_eq!(detect("jam berapa buka hari minggu"), Lang::Indonesian);
        assert_eq!(detect("What time do you open on Sunday?"), Lang::English);
        assert_eq!(detect("👍"), Lang::English);
    }
}
