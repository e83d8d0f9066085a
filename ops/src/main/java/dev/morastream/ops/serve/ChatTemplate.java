package dev.morastream.ops.serve;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.hubspot.jinjava.Jinjava;
import com.hubspot.jinjava.JinjavaConfig;
import com.hubspot.jinjava.interpret.RenderResult;
import com.hubspot.jinjava.interpret.TemplateError;
import com.hubspot.jinjava.lib.fn.ELFunctionDefinition;
import dev.morastream.models.tokenizer.TextTokenizer;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * Turns chat messages into the prompt ids a model sees.
 *
 * <p>A model directory whose {@code tokenizer_config.json} has a {@code chat_template} (a string,
 * or a list of named templates of which {@code default} is used) gets it rendered with Jinjava the way
 * HuggingFace's {@code apply_chat_template} does: {@code trim_blocks} and {@code lstrip_blocks} on,
 * with {@code messages}, {@code add_generation_prompt = true}, {@code bos_token}, {@code eos_token}
 * and {@code raise_exception(msg)} (a 400 with its message); the rendered text is tokenized without
 * adding a BOS (the template writes its own). Models without one get the fixed transcript
 * {@code System: …\nUser: …\nAssistant:} with BOS in front and {@code \nUser:} as a stop string; there,
 * content with a line that starts like a turn ({@code User:}, {@code Assistant:}, {@code System:}) is
 * refused, so no message can forge a turn.
 */
public abstract class ChatTemplate {
    private static final ObjectMapper JSON = new ObjectMapper();

    /** One chat message. */
    public record Message(String role, String content) {}

    /** What a chat request generates from: prompt ids and the stop strings the template needs. */
    public record Rendered(String text, int[] ids, List<String> stops) {}

    /**
     * @throws ApiError (400) when the messages cannot be rendered (a role the template refuses,
     *     forged turns in the fixed transcript, an error raised by the template)
     */
    public abstract Rendered render(List<Message> messages, TextTokenizer tok);

    /** {@code jinja} or {@code fixed}, for logs and tests. */
    public abstract String kind();

    /** The fixed {@code System:/User:/Assistant:} transcript. */
    public static ChatTemplate fixed() {
        return new Fixed();
    }

    /** A Jinja chat template with its special-token strings. */
    public static ChatTemplate jinja(String template, String bosToken, String eosToken) {
        return new Jinja(template, bosToken, eosToken);
    }

    /** The template of a model directory: its {@code tokenizer_config.json} {@code chat_template}, else {@link #fixed()}. */
    public static ChatTemplate forModel(Path modelDir) {
        Path cfg = modelDir.resolve("tokenizer_config.json");
        if (!Files.isRegularFile(cfg)) {
            return fixed();
        }
        JsonNode n;
        try {
            n = JSON.readTree(cfg.toFile());
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + cfg, e);
        }
        JsonNode t = n.get("chat_template");
        String template = null;
        if (t != null && t.isTextual()) {
            template = t.asText();
        } else if (t != null && t.isArray()) {
            for (JsonNode named : t) {
                if ("default".equals(named.path("name").asText())) {
                    template = named.path("template").asText();
                }
            }
            if (template == null) {
                throw new IllegalArgumentException(cfg + ": chat_template is a list without a template named 'default'");
            }
        } else if (t != null && !t.isNull()) {
            throw new IllegalArgumentException(cfg + ": chat_template must be a string or a list of {name, template}");
        }
        return template == null ? fixed() : jinja(template, special(n.get("bos_token")), special(n.get("eos_token")));
    }

    /** A special token given as a string or as {@code {"content": …}} (AddedToken). */
    private static String special(JsonNode v) {
        if (v == null || v.isNull()) {
            return "";
        }
        return v.isTextual() ? v.asText() : v.path("content").asText("");
    }

    private static final class Fixed extends ChatTemplate {
        private static final Pattern TURN = Pattern.compile("(?m)^[ \\t]*(System|User|Assistant)[ \\t]*:");

        @Override
        public Rendered render(List<Message> messages, TextTokenizer tok) {
            StringBuilder sb = new StringBuilder();
            for (int i = 0; i < messages.size(); i++) {
                Message m = messages.get(i);
                if (TURN.matcher(m.content()).find()) {
                    throw ApiError.badParam("messages[" + i + "].content", "invalid_value", "messages[" + i
                            + "].content has a line starting with a role marker (System:, User: or Assistant:), which would"
                            + " forge a turn in this model's transcript");
                }
                sb.append(switch (m.role()) {
                    case "system", "developer" -> "System: ";
                    case "user" -> "User: ";
                    case "assistant" -> "Assistant: ";
                    default -> throw ApiError.badParam("messages[" + i + "].role", "invalid_value",
                            "messages[" + i + "].role: unknown role '" + m.role() + "'");
                }).append(m.content()).append('\n');
            }
            String text = sb.append("Assistant:").toString();
            return new Rendered(text, tok.encodeFramed(text, false), List.of("\nUser:"));
        }

        @Override
        public String kind() {
            return "fixed";
        }
    }

    private static final class Jinja extends ChatTemplate {
        private final String template;
        private final String bos;
        private final String eos;
        private final Jinjava jinjava;

        Jinja(String template, String bos, String eos) {
            this.template = template;
            this.bos = bos;
            this.eos = eos;
            this.jinjava = new Jinjava(JinjavaConfig.newBuilder().withTrimBlocks(true).withLstripBlocks(true)
                    .withFailOnUnknownTokens(false).withMaxOutputSize(16L << 20).build());
            jinjava.getGlobalContext().registerFunction(
                    new ELFunctionDefinition("", "raise_exception", Jinja.class, "raise", String.class));
        }

        /** {@code raise_exception(msg)} of HuggingFace templates. */
        public static String raise(String message) {
            throw new TemplateRaised(message);
        }

        @Override
        public Rendered render(List<Message> messages, TextTokenizer tok) {
            List<Map<String, Object>> ms = new ArrayList<>();
            for (Message m : messages) {
                Map<String, Object> x = new LinkedHashMap<>();
                x.put("role", m.role());
                x.put("content", m.content());
                ms.add(x);
            }
            Map<String, Object> ctx = new HashMap<>();
            ctx.put("messages", ms);
            ctx.put("add_generation_prompt", true);
            ctx.put("bos_token", bos);
            ctx.put("eos_token", eos);
            RenderResult r;
            try {
                r = jinjava.renderForResult(template, ctx);
            } catch (TemplateRaised e) {
                throw ApiError.badRequest("chat template: " + e.getMessage());
            }
            for (TemplateError e : r.getErrors()) {
                if (e.getSeverity() == TemplateError.ErrorType.FATAL) {
                    String msg = e.getException() != null && rootOf(e.getException()) instanceof TemplateRaised raised
                            ? raised.getMessage() : e.getMessage();
                    throw ApiError.badRequest("chat template: " + msg);
                }
            }
            String text = r.getOutput();
            return new Rendered(text, tok.encode(text), List.of());
        }

        private static Throwable rootOf(Throwable t) {
            while (t.getCause() != null && t.getCause() != t) {
                if (t instanceof TemplateRaised) {
                    return t;
                }
                t = t.getCause();
            }
            return t;
        }

        @Override
        public String kind() {
            return "jinja";
        }
    }

    /** What {@code raise_exception} throws inside a template. */
    static final class TemplateRaised extends RuntimeException {
        TemplateRaised(String message) {
            super(message);
        }
    }
}
