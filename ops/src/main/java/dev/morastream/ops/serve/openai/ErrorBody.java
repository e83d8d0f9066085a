package dev.morastream.ops.serve.openai;

/** A refusal: {@code {"error": {"message", "type", "param", "code"}}}, param and code null when none. */
public record ErrorBody(Detail error) {
    public static ErrorBody of(String message, String type, String param, String code) {
        return new ErrorBody(new Detail(message, type, param, code));
    }

    public record Detail(String message, String type, String param, String code) {}

    /** The event a stream ends with when its generation fails: {@code {"error": {"message", "type"}}}. */
    public record InStream(Summary error) {
        public static InStream of(String message, String type) {
            return new InStream(new Summary(message, type));
        }
    }

    public record Summary(String message, String type) {}
}
