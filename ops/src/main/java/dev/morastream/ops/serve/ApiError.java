package dev.morastream.ops.serve;

/**
 * A request the API refuses, answered as {@code {"error": {"message", "type", "code"}}} with its
 * HTTP status.
 */
final class ApiError extends RuntimeException {
    final int status;
    final String type;
    final String code;

    ApiError(int status, String type, String code, String message) {
        super(message);
        this.status = status;
        this.type = type;
        this.code = code;
    }

    static ApiError badRequest(String message) {
        return new ApiError(400, "invalid_request_error", null, message);
    }
}
