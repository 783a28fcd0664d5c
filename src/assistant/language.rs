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

/// Sent when a customer asks for the assistant back and the tenant allows it.
pub fn assistant_back(lang: Lang) -> &'static str {
    match lang {
        Lang::English => "You're back with the assistant. How can I help?",
        Lang::Indonesian => {
            "Baik, Anda kembali terhubung dengan asisten. Ada yang bisa saya bantu?"
        }
    }
}

const HARI: [&str; 7] = [
    "Senin", "Selasa", "Rabu", "Kamis", "Jumat", "Sabtu", "Minggu",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Sent on a handoff outside business hours with nobody online: when the team will answer.
/// `opens` and `now` are in the tenant's time zone; the zone's abbreviation follows the time.
pub fn closed_notice(lang: Lang, opens: &jiff::Zoned, now: &jiff::Zoned) -> String {
    let days_ahead = (opens.date() - now.date()).get_days();
    let weekday = opens.weekday().to_monday_zero_offset() as usize;
    let zone = opens.strftime("%Z").to_string();
    match lang {
        Lang::English => {
            let time = format!("{:02}:{:02} {zone}", opens.hour(), opens.minute());
            let when = match days_ahead {
                0 => format!("today at {time}"),
                1 => format!("tomorrow at {time}"),
                _ => format!("on {} at {time}", DAYS[weekday]),
            };
            format!(
                "Thanks for your message. Our team is away right now and will reply here {when}."
            )
        }
        Lang::Indonesian => {
            let time = format!("{:02}.{:02} {zone}", opens.hour(), opens.minute());
            let when = match days_ahead {
                0 => format!("hari ini pukul {time}"),
                1 => format!("besok pukul {time}"),
                _ => format!("hari {} pukul {time}", HARI[weekday]),
            };
            format!(
                "Terima kasih atas pesan Anda. Tim kami sedang tidak bertugas dan akan membalas di sini {when}."
            )
        }
    }
}

/// Sent on a handoff when the team has no opening hours at all and nobody is online.
pub fn closed_notice_no_hours(lang: Lang) -> &'static str {
    match lang {
        Lang::English => "Thanks for your message. Our team is away right now and will reply here as soon as they can.",
        Lang::Indonesian => "Terima kasih atas pesan Anda. Tim kami sedang tidak bertugas dan akan membalas di sini secepatnya.",
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

    #[test]
    fn closed_notices_say_when_in_the_customers_language() {
        let tz = jiff::tz::TimeZone::get("Asia/Jakarta").unwrap();
        let z = |s: &str| {
            s.parse::<jiff::civil::DateTime>()
                .unwrap()
                .to_zoned(tz.clone())
                .unwrap()
        };
        let now = z("2024-05-17T19:00"); // a Friday
        let en = closed_notice(Lang::English, &z("2024-05-18T08:30"), &now);
        assert!(en.contains("tomorrow at 08:30 WIB"), "{en}");
        let id = closed_notice(Lang::Indonesian, &z("2024-05-20T08:00"), &now);
        assert!(id.contains("hari Senin pukul 08.00 WIB"), "{id}");
        let today = closed_notice(Lang::English, &z("2024-05-17T21:00"), &now);
        assert!(today.contains("today at 21:00"), "{today}");
    }
}
