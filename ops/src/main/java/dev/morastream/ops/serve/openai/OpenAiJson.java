package dev.morastream.ops.serve.openai;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.annotation.JsonUnwrapped;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.json.JsonMapper;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.reflect.RecordComponent;
import java.util.LinkedHashSet;
import java.util.Set;

/**
 * The one mapper of the API's wire format: strict reading (duplicate keys and anything after the
 * top-level value are errors), plain writing (nulls written, fields in record order), and the wire
 * names of a protocol record's parameters.
 */
public final class OpenAiJson {
    private static final ObjectMapper JSON = JsonMapper.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .build();

    private OpenAiJson() {}

    /** Parses one JSON value strictly; {@link JsonProcessingException#getOriginalMessage()} says what is wrong. */
    public static JsonNode read(byte[] json) throws IOException {
        return JSON.readTree(json);
    }

    /**
     * Binds a body, already checked for unknown names, to its protocol record. Cannot fail on
     * types: the records hold {@link JsonNode}s, checked afterwards with messages that name the field.
     */
    public static <T extends Record> T bind(JsonNode tree, Class<T> type) {
        try {
            return JSON.treeToValue(tree, type);
        } catch (JsonProcessingException e) {
            throw new IllegalArgumentException("cannot read the body as " + type.getSimpleName() + ": " + e.getOriginalMessage(), e);
        }
    }

    /** The JSON text of a response record (or any value Jackson can write). */
    public static String write(Object value) {
        try {
            return JSON.writeValueAsString(value);
        } catch (JsonProcessingException e) {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * The wire names of a snake_case protocol record's components, with those of its
     * {@link JsonUnwrapped} components inlined (in declaration order).
     */
    public static Set<String> parameterNames(Class<? extends Record> type) {
        Set<String> out = new LinkedHashSet<>();
        for (RecordComponent c : type.getRecordComponents()) {
            if (c.getAccessor().isAnnotationPresent(JsonUnwrapped.class)) {
                out.addAll(parameterNames(c.getType().asSubclass(Record.class)));
            } else {
                out.add(PropertyNamingStrategies.SNAKE_CASE.nameForField(null, null, c.getName()));
            }
        }
        return Set.copyOf(out);
    }
}
