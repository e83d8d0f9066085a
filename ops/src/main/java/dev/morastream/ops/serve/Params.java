package dev.morastream.ops.serve;

import com.fasterxml.jackson.databind.JsonNode;

/**
 * Type-strict readers of one request parameter's raw JSON value: {@code null} (absent) and a JSON
 * null mean "not given"; a wrong type or range is a 400 that names the parameter and what it got.
 */
final class Params {
    private Params() {}

    static ApiError typeError(String param, String want, JsonNode got) {
        return ApiError.badParam(param, "invalid_type", "'" + param + "' must be " + want + ", got " + (got == null ? "nothing" : got));
    }

    /** Whether a parameter was given: present and not a JSON null ("null means not given"). */
    static boolean given(JsonNode v) {
        return v != null && !v.isNull();
    }

    static String string(JsonNode v, boolean required, String name) {
        if (!given(v)) {
            if (required) {
                throw ApiError.badParam(name, "missing_required_parameter", "'" + name + "' is required");
            }
            return null;
        }
        if (!v.isTextual()) {
            throw typeError(name, "a string", v);
        }
        return v.asText();
    }

    static boolean bool(JsonNode v, boolean dflt, String name) {
        if (!given(v)) {
            return dflt;
        }
        if (!v.isBoolean()) {
            throw typeError(name, "true or false", v);
        }
        return v.asBoolean();
    }

    static int integer(JsonNode v, String field, int dflt, int lo, int hi) {
        if (!given(v)) {
            return dflt;
        }
        if (!v.isIntegralNumber() || !v.canConvertToInt() || v.asInt() < lo || v.asInt() > hi) {
            throw ApiError.badParam(field, "invalid_type", "'" + field + "' must be an integer in [" + lo + ", " + hi + "], got " + v);
        }
        return v.asInt();
    }

    static double number(JsonNode v, String field, double dflt, double lo, double hi) {
        if (!given(v)) {
            return dflt;
        }
        if (!v.isNumber() || v.asDouble() < lo || v.asDouble() > hi) {
            throw ApiError.badParam(field, "invalid_type", "'" + field + "' must be a number in [" + lo + ", " + hi + "], got " + v);
        }
        return v.asDouble();
    }
}
