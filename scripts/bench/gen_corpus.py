#!/usr/bin/env python3
"""Generate a deterministic corpus of realistic support mail for scripts/bench-ingest.sh (stdlib only).

    gen_corpus.py --count N --seed S --out DIR

Writes DIR/000001.eml ... DIR/<N>.eml (CRLF line endings, as an IMAP server serves them) and
DIR/manifest.json (count, total bytes, mix statistics). DIR is built under a temporary name and renamed
when complete, so an interrupted run never leaves a half corpus that a later run would reuse.

The mix follows the issue: conversations (Message-ID / In-Reply-To / References, replies quote the
previous message), 15% with one or two base64 attachments of 20 KB-2 MB (log-uniform, random bytes behind
a real PDF/PNG/ZIP signature), quoted-printable bodies, nine charsets (us-ascii, utf-8, iso-8859-1,
iso-8859-15, windows-1252, koi8-r, shift_jis, iso-2022-jp, gb2312), RFC 2047 encoded subjects and names,
10% HTML-only mail (realized share printed in manifest.json), 30% multipart/alternative, Received/DKIM/X-Mailer headers.
"""
import argparse
import base64
import email.utils
import json
import os
import quopri
import random
import shutil
import sys
import time

DOMAIN_CUSTOMERS = ["example.com", "example.org", "kunde.example.de", "client.example.fr",
                    "mail.example.ru", "example.co.jp", "example.cn", "shop.example.net"]
SUPPORT = "support@acme-support.example"
AGENTS = ["Dana Whitfield", "Marco Rossi", "Priya Natarajan", "Jonas Berg", "Aiko Tanaka"]
MAILERS = ["Microsoft Outlook 16.0", "Apple Mail (2.3731.700.6)", "Mozilla Thunderbird 115.6.0",
           "Roundcube Webmail/1.6.5", "K-9 Mail for Android", None, None]

# Per-charset text fragments (strings that the charset can encode). us-ascii uses the English set.
TEXT = {
    "en": {
        "names": ["Alice Johnson", "Bob Miller", "Carol Smith", "David Brown", "Emma Wilson", "Frank Moore"],
        "subjects": ["Cannot log in after password reset", "Invoice {n} charged twice",
                     "Export to CSV fails with error {n}", "Request for refund on order #{n}",
                     "Sync stopped working since Tuesday", "How do I add a second admin?",
                     "API returns 502 intermittently", "Attachment upload limit"],
        "lines": ["Hello,", "I have been trying to {v} for the last two days and it still does not work.",
                  "The error message says \"request failed (code {n})\" and nothing else.",
                  "Could you please look into this as soon as possible? Our team depends on it.",
                  "I attached a screenshot and the log file from this morning.",
                  "We are on the Business plan, account number {n}.",
                  "Thanks in advance for your help.", "Best regards,"],
        "verbs": ["export our reports", "reset my password", "connect the mailbox", "update the billing address"],
    },
    "latin": {  # iso-8859-1 / iso-8859-15 / windows-1252
        "names": ["Jürgen Müller", "François Lefèvre", "Inés Peña", "Søren Ødegård", "Zoë Brontë", "Björn Åström"],
        "subjects": ["Problème de connexion après la mise à jour", "Rückerstattung für Bestellung {n}",
                     "Factura {n} duplicada", "Frage zur Größe der Anhänge", "Résiliation du contrat n° {n}"],
        "lines": ["Bonjour,", "Sehr geehrte Damen und Herren,", "depuis la mise à jour, je ne peux plus me connecter.",
                  "Die Überweisung über {n} EUR wurde zweimal abgebucht.", "¿Podrían revisar la factura? Gracias.",
                  "Ich würde mich über eine schnelle Rückmeldung freuen.", "Merci d'avance et à bientôt.",
                  "Mit freundlichen Grüßen,", "Cordialement,"],
    },
    "cp1252": {  # windows-1252 only: smart quotes, dashes, euro, ellipsis
        "names": ["Chloé O’Brien", "Noël Pérez", "Renée Dubois"],
        "subjects": ["“Urgent” – account locked", "Invoice {n} – wrong VAT…", "Can’t open the export"],
        "lines": ["Hi team,", "the report says “0 items” – but there are {n} in the list…",
                  "We’ve been charged €{n} instead of €49 — please fix.", "It’s blocking our month-end close.",
                  "Kind regards,"],
    },
    "ru": {
        "names": ["Иван Петров", "Ольга Смирнова", "Дмитрий Козлов", "Анна Волкова"],
        "subjects": ["Не работает синхронизация", "Счёт {n} выставлен дважды", "Вопрос по тарифу",
                     "Ошибка при экспорте отчёта"],
        "lines": ["Здравствуйте!", "После обновления не могу войти в личный кабинет.",
                  "Ошибка {n} появляется каждый раз при экспорте.", "Прошу вернуть деньги за заказ N {n}.",
                  "Заранее спасибо за помощь.", "С уважением,"],
    },
    "ja": {
        "names": ["山田太郎", "佐藤花子", "鈴木一郎", "高橋美咲"],
        "subjects": ["ログインできません", "請求書{n}について", "データのエクスポートに失敗しました", "解約の手続きについて"],
        "lines": ["お世話になっております。", "昨日からログインできなくなりました。", "エラーコード{n}が表示されます。",
                  "至急ご確認いただけますでしょうか。", "よろしくお願いいたします。"],
    },
    "zh": {
        "names": ["王伟", "李娜", "张敏", "刘洋"],
        "subjects": ["无法登录账户", "发票{n}重复扣款", "导出报表失败", "关于退款的问题"],
        "lines": ["您好，", "自从昨天更新以后我就无法登录了。", "系统提示错误代码{n}。", "请尽快帮我处理，谢谢。",
                  "此致敬礼"],
    },
}
CHARSETS = [  # (charset, language set, weight)
    ("us-ascii", "en", 14), ("utf-8", None, 34), ("iso-8859-1", "latin", 12), ("iso-8859-15", "latin", 4),
    ("windows-1252", "cp1252", 10), ("koi8-r", "ru", 8), ("shift_jis", "ja", 6), ("iso-2022-jp", "ja", 4),
    ("gb2312", "zh", 8),
]
ATTACH_KINDS = [("application/pdf", "pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"),
                ("image/png", "png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
                ("application/zip", "zip", b"PK\x03\x04\x14\x00\x00\x00\x08\x00")]
ATTACH_NAMES = {"pdf": ["invoice-{n}", "contract_{n}", "Rechnung-{n}", "statement {n}"],
                "png": ["screenshot-{n}", "error_{n}", "Bildschirmfoto {n}"],
                "zip": ["logs-{n}", "export_{n}", "diagnostics-{n}"]}


def fill(rng, s):
    return s.replace("{n}", str(rng.randint(100, 99999)))


def qp(data: bytes) -> bytes:
    return quopri.encodestring(data).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def b64_lines(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def encode_word(text, charset):
    """RFC 2047 encoded-word for a header (B encoding; plain when ASCII)."""
    if text.isascii():
        return text
    raw = text.encode(charset)
    return "=?%s?B?%s?=" % (charset, base64.b64encode(raw).decode())


def addr(name, address, charset):
    if name.isascii():
        return '"%s" <%s>' % (name, address) if " " in name else "%s <%s>" % (name, address)
    return "%s <%s>" % (encode_word(name, charset), address)


class Gen:
    def __init__(self, count, seed):
        self.count, self.seed = count, seed
        self.rng = random.Random(seed)
        self.t = 1704067200 + self.rng.randint(0, 86400)  # 2024-01-01
        self.stats = {"attachments": 0, "attachment_bytes": 0, "html_only": 0, "alternative": 0,
                      "threads": 0, "charsets": {}, "qp": 0}

    def lang_for(self, charset, lang):
        if lang is not None:
            return lang
        return self.rng.choice(["en", "latin", "cp1252", "ru", "ja", "zh"])  # utf-8 carries any language

    def body_text(self, lang, quoted):
        rng, t = self.rng, TEXT[lang]
        lines = []
        for line in rng.sample(t["lines"], k=min(len(t["lines"]), rng.randint(3, len(t["lines"])))):
            line = line.replace("{v}", rng.choice(TEXT["en"]["verbs"])) if "{v}" in line else line
            lines.append(fill(rng, line))
        # A few longer paragraphs so bodies are not all tiny (support mail: logs, steps to reproduce).
        for _ in range(rng.randint(0, 6)):
            lines.append(" ".join(fill(rng, rng.choice(t["lines"])) for _ in range(rng.randint(3, 9))))
        if rng.random() < 0.2:
            lines.append("")
            lines += ["%s ERROR worker-%d request %d failed: timeout after %d ms" %
                      (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.t - rng.randint(0, 9999))),
                       rng.randint(1, 8), rng.randint(1, 10 ** 6), rng.randint(100, 30000))
                      for _ in range(rng.randint(5, 60))]
        lines.append("")
        lines.append(rng.choice(t["names"]))
        if quoted:
            lines.append("")
            lines.append("On %s, %s wrote:" % (quoted[0], quoted[1]) if lang == "en" else "%s, %s:" % quoted[:2])
            lines += ["> " + q for q in quoted[2].splitlines()[:80]]
        return "\n".join(lines)

    def text_part(self, text, charset, html):
        """One text/plain or text/html leaf: headers + encoded body, as bytes."""
        rng = self.rng
        if html:
            esc = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            paras = "".join("<p>%s</p>\n" % p for p in esc.split("\n") if p)
            text = ("<!DOCTYPE html>\n<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; "
                    "charset=%s\"><style>p{margin:0 0 8px;font-family:Arial,sans-serif}</style></head>\n"
                    "<body>\n<div class=\"msg\">\n%s</div>\n</body></html>" % (charset, paras))
        raw = text.encode(charset)  # LF here; each encoding below produces CRLF lines
        ctype = "text/html" if html else "text/plain"
        if charset in ("us-ascii", "iso-2022-jp") and rng.random() < 0.7:
            cte, body = "7bit", raw.replace(b"\n", b"\r\n")
        else:
            r = rng.random()
            if r < 0.7:
                cte, body = "quoted-printable", qp(raw)
                self.stats["qp"] += 1
            elif r < 0.85:
                cte, body = "base64", b64_lines(raw.replace(b"\n", b"\r\n"))
            else:
                cte, body = "8bit", raw.replace(b"\n", b"\r\n")
        fmt = "; format=flowed" if not html and rng.random() < 0.2 else ""
        head = "Content-Type: %s; charset=\"%s\"%s\r\nContent-Transfer-Encoding: %s\r\n" % (ctype, charset, fmt, cte)
        return head.encode(), body if body.endswith(b"\r\n") else body + b"\r\n"

    def attachment(self, index):
        rng = self.rng
        ctype, ext, magic = rng.choice(ATTACH_KINDS)
        # 20 KB-2 MB, skewed towards small files (log scale, u^1.7): mean ~290 KB, like real support mail.
        size = int(20_000 * 100 ** (rng.random() ** 1.7))
        data = magic + random.Random("%d-%d-%d" % (self.seed, index, size)).randbytes(size - len(magic))
        name = fill(rng, rng.choice(ATTACH_NAMES[ext])) + "." + ext
        fname = name if name.isascii() else encode_word(name, "utf-8")
        self.stats["attachment_bytes"] += size
        head = ("Content-Type: %s; name=\"%s\"\r\nContent-Disposition: attachment; filename=\"%s\"\r\n"
                "Content-Transfer-Encoding: base64\r\n" % (ctype, fname, fname))
        return head.encode(), b64_lines(data)

    def message(self, index, thread, charset, lang):
        rng = self.rng
        self.t += rng.randint(5, 900)
        customer = thread["customer"]
        from_customer = thread["n"] % 2 == 0 or rng.random() < 0.15
        if from_customer:
            frm, to = customer, (thread["agent"] + " (Support)", SUPPORT)
        else:
            frm, to = (thread["agent"] + " (Support)", SUPPORT), customer
        date = email.utils.formatdate(self.t, localtime=False)
        mid = "<%d.%d.%s@%s>" % (self.t, index, "%08x" % rng.getrandbits(32), frm[1].split("@")[1])
        subj = thread["subject"] if thread["n"] == 0 else rng.choice(["Re: ", "RE: ", "AW: ", "Re: "]) + thread["subject"]
        quoted = thread.get("last") if thread["n"] > 0 and rng.random() < 0.8 else None
        text = self.body_text(lang, quoted)
        kind = rng.random()
        html_only = kind < 0.10
        alternative = 0.10 <= kind < 0.40
        with_attachment = rng.random() < 0.15

        hdr = []
        hdr.append("Return-Path: <%s>" % frm[1])
        hdr.append("Delivered-To: bob@inboxd.test")
        mx = "mx%d.%s" % (rng.randint(1, 4), frm[1].split("@")[1])
        hdr.append("Received: from %s (%s [192.0.2.%d])\r\n\tby mail.acme-support.example (Postfix) with "
                   "ESMTPS id %X\r\n\tfor <%s>; %s" % (mx, mx, rng.randint(1, 254),
                                                      rng.getrandbits(40), to[1], date))
        if rng.random() < 0.6:
            hdr.append("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=%s; s=sel1;\r\n\th=from:to:subject"
                       ":date:message-id; bh=%s;\r\n\tb=%s" % (frm[1].split("@")[1],
                                                               base64.b64encode(rng.randbytes(32)).decode(),
                                                               base64.b64encode(rng.randbytes(128)).decode()))
        hdr.append("Date: " + date)
        hdr.append("From: " + addr(frm[0], frm[1], charset if charset != "us-ascii" else "utf-8"))
        hdr.append("To: " + addr(to[0], to[1], charset if charset != "us-ascii" else "utf-8"))
        if rng.random() < 0.15:
            hdr.append("Cc: %s" % ", ".join("%s <%s>" % (n.split()[0], n.split()[0].lower() + "@" + customer[1].split("@")[1])
                                            for n in rng.sample(TEXT["en"]["names"], 2)))
        hdr.append("Subject: " + encode_word(subj, charset if charset != "us-ascii" else "utf-8"))
        hdr.append("Message-ID: " + mid)
        if thread["refs"]:
            hdr.append("In-Reply-To: " + thread["refs"][-1])
            hdr.append("References: " + "\r\n ".join(thread["refs"][-10:]))
        mailer = rng.choice(MAILERS)
        if mailer:
            hdr.append("X-Mailer: " + mailer)
        hdr.append("MIME-Version: 1.0")

        if html_only:
            self.stats["html_only"] += 1
            leaf = [self.text_part(text, charset, True)]
        elif alternative:
            self.stats["alternative"] += 1
            leaf = [self.text_part(text, charset, False), self.text_part(text, charset, True)]
        else:
            leaf = [self.text_part(text, charset, False)]

        def multipart(subtype, parts):
            b = "----=_Part_%d_%d" % (index, rng.getrandbits(30))
            head = "Content-Type: multipart/%s;\r\n\tboundary=\"%s\"\r\n" % (subtype, b)
            body = b"This is a multi-part message in MIME format.\r\n\r\n"
            for ph, pb in parts:
                body += b"--" + b.encode() + b"\r\n" + ph + b"\r\n" + pb
            body += b"--" + b.encode() + b"--\r\n"
            return head.encode(), body

        content = leaf[0] if len(leaf) == 1 else multipart("alternative", leaf)
        if with_attachment:
            self.stats["attachments"] += 1
            atts = [self.attachment(index)]
            if rng.random() < 0.1:
                atts.append(self.attachment(index + 10 ** 9))
            content = multipart("mixed", [content] + atts)
        ch, cb = content
        msg = ("\r\n".join(hdr) + "\r\n").encode() + ch + b"\r\n" + cb

        thread["refs"].append(mid)
        thread["n"] += 1
        thread["last"] = (date, frm[0], text)
        return msg

    def run(self, out):
        rng = self.rng
        tmp = out + ".tmp-%d" % os.getpid()
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        total, active, cs_weights = 0, [], [w for _, _, w in CHARSETS]
        for i in range(1, self.count + 1):
            # Keep ~8 conversations open; new ones start at a rate giving ~4.6 messages per thread.
            if not active or (len(active) < 12 and rng.random() < 0.22):
                charset, lang, _ = rng.choices(CHARSETS, weights=cs_weights)[0]
                lang = self.lang_for(charset, lang)
                name = rng.choice(TEXT[lang]["names"])
                user = "user%d" % rng.randint(1, 50000)
                active.append({"charset": charset, "lang": lang, "n": 0, "refs": [],
                               "customer": (name, "%s@%s" % (user, rng.choice(DOMAIN_CUSTOMERS))),
                               "agent": rng.choice(AGENTS),
                               "subject": fill(rng, rng.choice(TEXT[lang]["subjects"])),
                               "len": max(1, min(20, int(rng.expovariate(1 / 4.6)) + 1))})
                self.stats["threads"] += 1
            th = rng.choice(active)
            msg = self.message(i, th, th["charset"], th["lang"])
            self.stats["charsets"][th["charset"]] = self.stats["charsets"].get(th["charset"], 0) + 1
            if th["n"] >= th["len"]:
                active.remove(th)
            with open(os.path.join(tmp, "%06d.eml" % i), "wb") as f:
                f.write(msg)
            total += len(msg)
        manifest = {"count": self.count, "seed": self.seed, "total_bytes": total, "stats": self.stats,
                    "generator": "scripts/bench/gen_corpus.py v1"}
        with open(os.path.join(tmp, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1)
        shutil.rmtree(out, ignore_errors=True)
        os.rename(tmp, out)
        return manifest


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    t0 = time.monotonic()
    m = Gen(a.count, a.seed).run(a.out)
    print("generated %d messages, %.1f MB, %d threads, %d with attachments, %d HTML-only in %.1f s -> %s" %
          (m["count"], m["total_bytes"] / 1e6, m["stats"]["threads"], m["stats"]["attachments"],
           m["stats"]["html_only"], time.monotonic() - t0, a.out), file=sys.stderr)


if __name__ == "__main__":
    main()
