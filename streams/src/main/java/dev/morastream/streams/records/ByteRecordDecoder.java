package dev.morastream.streams.records;

import java.nio.charset.StandardCharsets;
import java.util.Objects;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.header.Header;

/**
 * The fast path of {@link RecordDecoder} for a byte-level tokenizer (ids 0..255 are the UTF-8
 * bytes of the text): straight from the record's {@code byte[]} to the text's bytes, which are its
 * token ids (the packer frames them {@code BOS + bytes + EOS}, as {@code Packer.encode} does), in
 * one pass that validates UTF-8, parses the JSON and checks the fields, and a copy of the text's
 * bytes (unescaped; none at all for a plain-text value); no {@code String} of the text, no JSON tree.
 *
 * <p>It decides only records it can decide with certainty, and only to accept them: a plain-text
 * value, or a JSON object whose members are strings, {@code null}, or an integer {@code id}.
 * Everything else returns {@code null} and is the reference's to decode ({@link RecordDecoder#decode}):
 * every rejection (so reasons and details are the reference's by construction), and the rare
 * shapes (members with nested values, numbers or booleans, escaped or duplicate keys, an escaped
 * lone surrogate, a value that starts with a control or non-ASCII character, more than
 * {@value #MAX_MEMBERS} members). What it accepts is what the reference accepts, with the same id,
 * domain and tokens: {@code ByteRecordDecoderTest} checks it against the reference. Thread-safe.
 */
public final class ByteRecordDecoder {
    /** Values longer than this go to the reference (below Jackson's own string limits, which reject longer texts). */
    static final int MAX_FAST_BYTES = 4 << 20;
    static final int MAX_MEMBERS = 16;
    private static final int MAX_KEY_BYTES = 1_000;
    private static final int MAX_ID_DIGITS = 18;

    /**
     * An accepted record: what the packer needs of it.
     *
     * @param bytes the text's UTF-8 bytes, or the prompt's then the completion's: the byte-level ids
     *     before framing (for a plain-text value, the value array itself: not copied, not to be changed)
     * @param promptEnd framed tokens before this index are prompt (0 for a text record)
     */
    public record Tokens(String id, String domain, boolean completion, byte[] bytes, int promptEnd) {
        /** The framed ids: {@code BOS + bytes + EOS} (BOS when {@code bos >= 0}). */
        public int[] framed(int bos, int eos) {
            int head = bos >= 0 ? 1 : 0;
            int[] ids = new int[head + bytes.length + 1];
            if (head == 1) {
                ids[0] = bos;
            }
            for (int k = 0; k < bytes.length; k++) {
                ids[head + k] = bytes[k] & 0xff;
            }
            ids[ids.length - 1] = eos;
            return ids;
        }
    }

    private final RecordDecoder.Config config;
    private final int bos;

    /** @param bos the packer's BOS id, or negative for none (it places {@link Tokens#promptEnd()}) */
    public ByteRecordDecoder(RecordDecoder.Config config, int bos) {
        this.config = Objects.requireNonNull(config);
        this.bos = bos;
    }

    /** The record, accepted, as tokens; or {@code null}: the reference decides it. */
    public Tokens decode(ConsumerRecord<byte[], byte[]> r) {
        return decode(r, idPrefix(r.topic(), r.partition()));
    }

    /** The prefix of the default ids of a partition's records: {@code <topic>-<partition>-}. */
    public static String idPrefix(String topic, int partition) {
        return topic + "-" + partition + "-";
    }

    /**
     * As {@link #decode(ConsumerRecord)}, with the {@link #idPrefix} of the record's partition
     * (computed once per partition by the caller).
     */
    public Tokens decode(ConsumerRecord<byte[], byte[]> r, String idPrefix) {
        byte[] v = r.value();
        if (v == null || v.length == 0 || v.length > config.maxBytes() || v.length > MAX_FAST_BYTES) {
            return null;
        }
        int i = skipWs(v, 0);
        if (i == v.length) {
            return null;
        }
        int c = v[i] & 0xff;
        if (c == '{') {
            return json(r, v, i + 1, idPrefix);
        }
        if (c <= 0x20 || c >= 0x7f) {
            return null; // what String.stripLeading would skip, a control, or non-ASCII: the reference's
        }
        // plain text (the first character is printable ASCII, so it is not blank): the whole value
        if (!plainTextOk(v)) {
            return null;
        }
        String domain = domain(r, null);
        if (domain == null) {
            return null;
        }
        return new Tokens(idPrefix + r.offset(), domain, false, v, 0);
    }

    /** Valid UTF-8 and no disallowed control character (C0 but tab, newline, CR; DEL; C1). */
    private static boolean plainTextOk(byte[] v) {
        int n = v.length;
        int p = Utf8.plainRun(v, 0, n);
        while (p < n) {
            int b = v[p];
            if (b == '"' || b == '\\' || b == '\t' || b == '\n' || b == '\r') {
                p++;
            } else if (b >= 0) {
                return false; // another C0 control, or DEL
            } else {
                int len = Utf8.sequence(v, p, n);
                if (len < 0 || (len == 2 && Utf8.codePoint(v, p, 2) <= 0x9f)) {
                    return false;
                }
                p += len;
            }
            p = Utf8.plainRun(v, p, n);
        }
        return true;
    }

    /** The scan of one JSON string: where it is and what it holds. */
    private static final class Str {
        /** Index after the opening quote, and of the closing quote. */
        int start;
        int end;
        boolean escaped;
        /** UTF-8 bytes once unescaped. */
        int bytes;
        boolean nonBlank;
        boolean badControl;
    }

    private static final int ID = 0;
    private static final int DOMAIN = 1;
    private static final int TEXT = 2;
    private static final int PROMPT = 3;
    private static final int COMPLETION = 4;
    private static final byte[][] NAMES = {bytes("id"), bytes("domain"), bytes("text"), bytes("prompt"), bytes("completion")};

    private Tokens json(ConsumerRecord<byte[], byte[]> r, byte[] v, int p, String idPrefix) {
        int n = v.length;
        Str[] field = new Str[NAMES.length];
        String intId = null;
        int[] keys = new int[2 * MAX_MEMBERS];
        int members = 0;
        p = skipWs(v, p);
        if (p < n && v[p] == '}') {
            return null; // {}: the reference rejects it
        }
        while (true) {
            if (p >= n || v[p] != '"' || members == MAX_MEMBERS) {
                return null;
            }
            int ks = p + 1;
            int ke = ks;
            while (ke < n && v[ke] != '"') {
                if (v[ke] == '\\' || (v[ke] >= 0 && v[ke] < 0x20) || ke - ks > MAX_KEY_BYTES) {
                    return null;
                }
                ke++;
            }
            if (ke >= n || !Utf8.valid(v, ks, ke)) {
                return null;
            }
            for (int m = 0; m < members; m++) { // a duplicate key is the reference's (malformed JSON)
                if (java.util.Arrays.equals(v, keys[2 * m], keys[2 * m + 1], v, ks, ke)) {
                    return null;
                }
            }
            keys[2 * members] = ks;
            keys[2 * members + 1] = ke;
            members++;
            int known = -1;
            for (int f = 0; f < NAMES.length; f++) {
                if (java.util.Arrays.equals(v, ks, ke, NAMES[f], 0, NAMES[f].length)) {
                    known = f;
                }
            }
            p = skipWs(v, ke + 1);
            if (p >= n || v[p] != ':') {
                return null;
            }
            p = skipWs(v, p + 1);
            if (p >= n) {
                return null;
            }
            int c = v[p];
            if (c == '"') {
                Str s = new Str();
                if (!scan(v, p + 1, s)) {
                    return null;
                }
                if (known >= 0) {
                    field[known] = s;
                }
                p = s.end + 1;
            } else if (c == 'n' && p + 4 <= n && v[p + 1] == 'u' && v[p + 2] == 'l' && v[p + 3] == 'l') {
                p += 4; // null: as if absent
            } else if (known == ID && (c == '-' || (c >= '0' && c <= '9'))) {
                int s = p;
                if (c == '-') {
                    p++;
                }
                int digits = p;
                while (p < n && v[p] >= '0' && v[p] <= '9') {
                    p++;
                }
                int count = p - digits;
                if (count == 0 || count > MAX_ID_DIGITS || (v[digits] == '0' && (count > 1 || c == '-'))) {
                    return null; // "-", leading zeros, "-0" (whose text is "0"), or long: the reference's
                }
                intId = new String(v, s, p - s, StandardCharsets.US_ASCII);
            } else {
                return null;
            }
            p = skipWs(v, p);
            if (p >= n) {
                return null;
            }
            if (v[p] == ',') {
                p = skipWs(v, p + 1);
            } else if (v[p] == '}') {
                break;
            } else {
                return null; // also what follows a number or null that does not end it
            }
        }
        if (skipWs(v, p + 1) != n) {
            return null; // trailing content
        }
        Str text = field[TEXT];
        Str prompt = field[PROMPT];
        Str completion = field[COMPLETION];
        if (text != null ? prompt != null || completion != null || !text.nonBlank
                : prompt == null || completion == null || !completion.nonBlank) {
            return null;
        }
        for (Str s : field) {
            if (s != null && s.badControl) {
                return null;
            }
        }
        String id = intId;
        if (field[ID] != null) {
            if (intId != null) {
                return null; // both kinds: cannot happen without a duplicate key
            }
            id = string(v, field[ID]);
        }
        if (id != null && RecordDecoder.invalidId(id) != null) {
            return null;
        }
        String domain = domain(r, field[DOMAIN] == null ? null : string(v, field[DOMAIN]));
        if (domain == null) {
            return null;
        }
        byte[] bytes;
        int promptEnd = 0;
        if (text != null) {
            bytes = text.escaped ? new byte[text.bytes] : null;
            if (bytes == null) {
                bytes = java.util.Arrays.copyOfRange(v, text.start, text.end);
            } else {
                write(v, text, bytes, 0);
            }
        } else {
            bytes = new byte[prompt.bytes + completion.bytes];
            write(v, prompt, bytes, 0);
            write(v, completion, bytes, prompt.bytes);
            promptEnd = (bos >= 0 ? 1 : 0) + prompt.bytes;
        }
        return new Tokens(id != null ? id : idPrefix + r.offset(), domain, text == null, bytes, promptEnd);
    }

    /**
     * Scans the JSON string whose content starts at {@code p} into {@code s}; {@code false} when it
     * is not for the fast path (unterminated, a raw control character, invalid UTF-8, an unknown
     * escape, an escaped lone surrogate).
     */
    private static boolean scan(byte[] v, int p, Str s) {
        int n = v.length;
        s.start = p;
        int bytes = 0;
        boolean nonBlank = false;
        boolean bad = false;
        boolean escaped = false;
        while (true) {
            if (p >= n) {
                return false;
            }
            int q = Utf8.plainRun(v, p, n); // the common case: a run of printable ASCII and spaces
            if (q > p) {
                if (!nonBlank) {
                    for (int k = p; k < q && !nonBlank; k++) {
                        nonBlank = v[k] != ' ';
                    }
                }
                bytes += q - p;
                p = q;
                continue;
            }
            int b = v[p];
            if (b == '"') {
                break;
            }
            if (b == 0x7f) {
                bytes++;
                p++;
                bad = true;
                nonBlank = true;
            } else if (b >= 0 && b < 0x20) {
                return false; // Jackson refuses an unescaped control character
            } else if (b == '\\') {
                escaped = true;
                if (p + 1 >= n) {
                    return false;
                }
                int cp;
                int e = v[p + 1];
                switch (e) {
                    case '"', '\\', '/' -> cp = e;
                    case 'b' -> cp = '\b';
                    case 'f' -> cp = '\f';
                    case 'n' -> cp = '\n';
                    case 'r' -> cp = '\r';
                    case 't' -> cp = '\t';
                    case 'u' -> cp = -1;
                    default -> {
                        return false;
                    }
                }
                if (cp >= 0) {
                    p += 2;
                } else {
                    int u = hex4(v, p + 2);
                    if (u < 0 || Character.isLowSurrogate((char) u)) {
                        return false;
                    }
                    if (Character.isHighSurrogate((char) u)) {
                        int lo = p + 7 < n && v[p + 6] == '\\' && v[p + 7] == 'u' ? hex4(v, p + 8) : -1;
                        if (lo < 0 || !Character.isLowSurrogate((char) lo)) {
                            return false;
                        }
                        cp = Character.toCodePoint((char) u, (char) lo);
                        p += 12;
                    } else {
                        cp = u;
                        p += 6;
                    }
                }
                bytes += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
                bad |= (cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r') || (cp >= 0x7f && cp <= 0x9f);
                nonBlank |= !Character.isWhitespace(cp);
            } else {
                int len = Utf8.sequence(v, p, n);
                if (len < 0) {
                    return false;
                }
                int cp = Utf8.codePoint(v, p, len);
                bad |= cp <= 0x9f;
                nonBlank |= !Character.isWhitespace(cp);
                bytes += len;
                p += len;
            }
        }
        s.end = p;
        s.bytes = bytes;
        s.nonBlank = nonBlank;
        s.badControl = bad;
        s.escaped = escaped;
        return true;
    }

    /** Writes the string's UTF-8 bytes, unescaped, from {@code at}. */
    private static void write(byte[] v, Str s, byte[] out, int at) {
        if (!s.escaped) {
            System.arraycopy(v, s.start, out, at, s.end - s.start);
            return;
        }
        for (int p = s.start; p < s.end; ) {
            int b = v[p];
            if (b != '\\') { // escapes are rare: byte by byte (runs between them are too short to widen in bulk)
                out[at++] = (byte) b;
                p++;
                continue;
            }
            int cp;
            switch (v[p + 1]) {
                case 'b' -> cp = '\b';
                case 'f' -> cp = '\f';
                case 'n' -> cp = '\n';
                case 'r' -> cp = '\r';
                case 't' -> cp = '\t';
                case 'u' -> cp = -1;
                default -> cp = v[p + 1];
            }
            if (cp >= 0) {
                p += 2;
            } else {
                int u = hex4(v, p + 2);
                if (Character.isHighSurrogate((char) u)) {
                    cp = Character.toCodePoint((char) u, (char) hex4(v, p + 8));
                    p += 12;
                } else {
                    cp = u;
                    p += 6;
                }
            }
            at = Utf8.put(cp, out, at);
        }
    }

    /** The string's value (small strings: ids and domains). */
    private static String string(byte[] v, Str s) {
        if (!s.escaped) {
            return new String(v, s.start, s.end - s.start, StandardCharsets.UTF_8);
        }
        byte[] b = new byte[s.bytes];
        write(v, s, b, 0);
        return new String(b, StandardCharsets.UTF_8);
    }

    /**
     * The domain as the reference finds it: the JSON field, else the {@code domain} header, else the
     * key, else the default; {@code null} when that is not a configured domain or not valid UTF-8
     * (the reference rejects the record).
     */
    private String domain(ConsumerRecord<byte[], byte[]> r, String fromJson) {
        String domain = fromJson;
        if (domain == null) {
            Header h = r.headers() == null ? null : r.headers().lastHeader(RecordDecoder.DOMAIN_HEADER);
            byte[] b = h != null && h.value() != null && h.value().length > 0 ? h.value()
                    : r.key() != null && r.key().length > 0 ? r.key() : null;
            if (b != null) {
                if (!Utf8.valid(b, 0, b.length)) {
                    return null;
                }
                domain = new String(b, StandardCharsets.UTF_8);
            } else {
                domain = config.defaultDomain();
            }
        }
        return domain != null && config.domains().contains(domain) ? domain : null;
    }

    /** After JSON whitespace (space, tab, newline, CR). */
    private static int skipWs(byte[] v, int p) {
        while (p < v.length && (v[p] == ' ' || v[p] == '\n' || v[p] == '\r' || v[p] == '\t')) {
            p++;
        }
        return p;
    }

    private static int hex4(byte[] v, int p) {
        if (p + 4 > v.length) {
            return -1;
        }
        int x = 0;
        for (int k = p; k < p + 4; k++) {
            int d = Character.digit(v[k], 16);
            if (d < 0 || v[k] < 0) {
                return -1;
            }
            x = x * 16 + d;
        }
        return x;
    }

    private static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.US_ASCII);
    }
}
