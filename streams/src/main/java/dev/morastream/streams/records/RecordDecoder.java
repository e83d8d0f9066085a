package dev.morastream.streams.records;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.morastream.streams.records.Rejected.Reason;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.Objects;
import java.util.Set;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.header.Header;

/**
 * Bytes of a Kafka record to a {@link DomainRecord}, or a {@link Rejected} saying why not.
 *
 * <p>Value formats (UTF-8):
 * <ul>
 *   <li>plain text: the whole value is the text;</li>
 *   <li>a JSON object (the first non-blank character is <code>{</code>):
 *       <code>{"text": …}</code> or <code>{"prompt": …, "completion": …}</code>, with optional
 *       {@code "id"} (string or integer) and {@code "domain"} (string); other fields are ignored.</li>
 * </ul>
 * The domain is the JSON {@code domain} field, else the {@code domain} header, else the record key,
 * else the configured default. Rejected: invalid UTF-8 (value, key or header), an empty or blank
 * value or text, a value over {@code maxBytes}, malformed JSON (including duplicate keys and trailing
 * content), a known field of the wrong type, a JSON object with neither text nor prompt+completion,
 * control characters other than tab, newline and carriage return (C0, DEL, C1) in any string, and a
 * domain that is not configured, and an {@code id} that is empty, longer than {@link #MAX_ID_LENGTH}
 * characters or not printable ({@link #invalidId}). Thread-safe.
 */
public final class RecordDecoder {
    /** The {@code domain} header name. */
    public static final String DOMAIN_HEADER = "domain";
    /** The longest record id accepted, in characters (code points). */
    public static final int MAX_ID_LENGTH = 256;

    /**
     * @param domains the domains that are trained; a record of any other is rejected
     * @param defaultDomain the domain of a record that names none, or {@code null} to reject those
     * @param maxBytes the largest value accepted, in bytes
     */
    public record Config(Set<String> domains, String defaultDomain, int maxBytes) {
        public Config {
            domains = Set.copyOf(domains);
            if (domains.isEmpty()) {
                throw new IllegalArgumentException("no domain configured");
            }
            if (defaultDomain != null && !domains.contains(defaultDomain)) {
                throw new IllegalArgumentException("default domain " + defaultDomain + " is not configured");
            }
            if (maxBytes <= 0) {
                throw new IllegalArgumentException("maxBytes must be positive");
            }
        }

        /** One domain, which is also the default, and values up to 1 MiB. */
        public static Config single(String domain) {
            return new Config(Set.of(domain), domain, 1 << 20);
        }
    }

    private static final ObjectMapper JSON = new ObjectMapper()
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION);

    private final Config config;

    public RecordDecoder(Config config) {
        this.config = Objects.requireNonNull(config);
    }

    public Config config() {
        return config;
    }

    public DecodeResult decode(ConsumerRecord<byte[], byte[]> r) {
        byte[] value = r.value();
        if (value == null || value.length == 0) {
            return new Rejected(Reason.EMPTY, "no value", r);
        }
        if (value.length > config.maxBytes()) {
            return new Rejected(Reason.TOO_LARGE, value.length + " bytes > " + config.maxBytes(), r);
        }
        String s;
        try {
            s = utf8(value);
        } catch (CharacterCodingException e) {
            return new Rejected(Reason.INVALID_UTF8, "value: " + e.getMessage(), r);
        }
        if (s.isBlank()) {
            return new Rejected(Reason.EMPTY, "blank value", r);
        }
        String id = null;
        String domain = null;
        String text = null;
        String prompt = null;
        String completion = null;
        if (s.stripLeading().startsWith("{")) {
            JsonNode node;
            try {
                node = JSON.readTree(s);
            } catch (JsonProcessingException e) {
                return new Rejected(Reason.MALFORMED_JSON, e.getOriginalMessage(), r);
            }
            if (node == null || !node.isObject()) {
                return new Rejected(Reason.MALFORMED_JSON, "not a JSON object", r);
            }
            JsonNode idNode = node.get("id");
            if (idNode != null && !idNode.isNull()) {
                if (idNode.isTextual()) {
                    id = idNode.textValue();
                } else if (idNode.isIntegralNumber()) {
                    id = idNode.asText();
                } else {
                    return new Rejected(Reason.WRONG_TYPE, "id is " + idNode.getNodeType(), r);
                }
            }
            String[] fields = {"domain", "text", "prompt", "completion"};
            String[] values = new String[fields.length];
            for (int i = 0; i < fields.length; i++) {
                JsonNode f = node.get(fields[i]);
                if (f != null && !f.isNull()) {
                    if (!f.isTextual()) {
                        return new Rejected(Reason.WRONG_TYPE, fields[i] + " is " + f.getNodeType(), r);
                    }
                    values[i] = f.textValue();
                }
            }
            domain = values[0];
            text = values[1];
            prompt = values[2];
            completion = values[3];
            if (text != null && (prompt != null || completion != null)) {
                return new Rejected(Reason.MALFORMED_JSON, "both text and prompt/completion", r);
            }
            if (text == null && (prompt == null || completion == null)) {
                return new Rejected(Reason.MISSING_FIELD, "needs text, or prompt and completion", r);
            }
            if (text != null ? text.isBlank() : (prompt.isEmpty() && completion.isEmpty()) || completion.isBlank()) {
                return new Rejected(Reason.EMPTY, "blank text or completion", r);
            }
        } else {
            text = s;
        }
        if (id != null) {
            String why = invalidId(id);
            if (why != null) {
                return new Rejected(Reason.INVALID_ID, why, r);
            }
        }
        for (String part : new String[] {id, domain, text, prompt, completion}) {
            int bad = badControl(part);
            if (bad >= 0) {
                return new Rejected(Reason.CONTROL_CHARACTERS, String.format("U+%04X", bad), r);
            }
        }
        if (domain == null) {
            Header h = r.headers() == null ? null : r.headers().lastHeader(DOMAIN_HEADER);
            try {
                if (h != null && h.value() != null && h.value().length > 0) {
                    domain = utf8(h.value());
                } else if (r.key() != null && r.key().length > 0) {
                    domain = utf8(r.key());
                }
            } catch (CharacterCodingException e) {
                return new Rejected(Reason.INVALID_UTF8, "domain header or key: " + e.getMessage(), r);
            }
        }
        if (domain == null) {
            domain = config.defaultDomain();
            if (domain == null) {
                return new Rejected(Reason.UNKNOWN_DOMAIN, "no domain given and no default", r);
            }
        }
        if (!config.domains().contains(domain)) {
            return new Rejected(Reason.UNKNOWN_DOMAIN, "domain not configured: " + abbreviate(domain), r);
        }
        if (id == null) {
            id = r.topic() + "-" + r.partition() + "-" + r.offset();
        }
        return new DomainRecord(id, domain, text, prompt, completion, r.topic(), r.partition(), r.offset());
    }

    private static String utf8(byte[] b) throws CharacterCodingException {
        CharsetDecoder d = StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT);
        CharBuffer cb = d.decode(ByteBuffer.wrap(b));
        return cb.toString();
    }

    /**
     * Why {@code id} is not a usable record id ({@code null}: it is): ids go into ledgers, logs and
     * metrics, one per line, so they are 1 to {@link #MAX_ID_LENGTH} printable characters: no control
     * or format characters, line or paragraph separators, unpaired surrogates, private-use or
     * unassigned code points.
     */
    public static String invalidId(String id) {
        if (id.isEmpty()) {
            return "empty id";
        }
        int n = id.codePointCount(0, id.length());
        if (n > MAX_ID_LENGTH) {
            return "id of " + n + " characters > " + MAX_ID_LENGTH;
        }
        for (int i = 0; i < id.length(); ) {
            int cp = id.codePointAt(i);
            switch (Character.getType(cp)) {
                case Character.CONTROL, Character.FORMAT, Character.LINE_SEPARATOR, Character.PARAGRAPH_SEPARATOR,
                     Character.SURROGATE, Character.PRIVATE_USE, Character.UNASSIGNED -> {
                    return String.format("id has a non-printable character U+%04X at %d", cp, i);
                }
                default -> i += Character.charCount(cp);
            }
        }
        return null;
    }

    /** The first disallowed control character of {@code s}, or -1. */
    static int badControl(String s) {
        if (s == null) {
            return -1;
        }
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || (c >= 0x7f && c <= 0x9f)) {
                return c;
            }
        }
        return -1;
    }

    private static String abbreviate(String s) {
        return s.length() <= 64 ? s : s.substring(0, 64) + "…";
    }
}
