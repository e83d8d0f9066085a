package dev.morastream.ops.serve;

/**
 * A request the API refuses, answered as {@code {"error": {"message", "type", "param", "code"}}} with
 * its HTTP status ({@code param} names the request parameter at fault, or is null).
 */
final class ApiError extends RuntimeException {
    final int status;
    final String type;
    final String code;
    final String param;

    ApiError(int status, String type, String code, String message) {
        this(status, type, code, message, null);
    }

    ApiError(int status, String type, String code, String message, String param) {
        super(message);
        this.status = status;
        this.type = type;
        this.code = code;
        this.param = param;
    }

    static ApiError badRequest(String message) {
        return new ApiError(400, "invalid_request_error", null, message);
    }

    /** A 400 about one parameter, named in the message and in {@code param}. */
    static ApiError badParam(String param, String code, String message) {
        return new ApiError(400, "invalid_request_error", code, message, param);
    }
}
