package dev.morastream.models.llama;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * Enforces the rule of {@link Scalars}: no DJL number overload ({@code x.mul(0.5f)}, {@code
 * x.div(count)}, ...) in the models module, whose tensors may be on a recorded graph. A site
 * where no graph can be recorded says so with {@code // scalar-ok: <why>} on its line.
 */
class ScalarRuleTest {
    private static final Pattern CALL = Pattern.compile("\\.(mul|div|pow|maximum|minimum)\\(\\s*([^()]*(\\([^()]*\\))?[^()]*)\\)");
    private static final Pattern NUMBER = Pattern.compile("^-?(\\d[\\d_]*\\.?\\d*([eE][-+]?\\d+)?[fFdDlL]?|\\.\\d+[fFdD]?)$");
    private static final Pattern CAST = Pattern.compile("^\\(\\s*(float|double|int|long)\\s*\\).*");

    @Test
    void noNumberOverloadOnTensorsInTheModelsModule() throws IOException {
        Path src = Path.of("src/main/java");
        List<String> violations = new ArrayList<>();
        try (Stream<Path> files = Files.walk(src)) {
            for (Path f : files.filter(p -> p.toString().endsWith(".java")).toList()) {
                String text = Files.readString(f);
                String[] lines = text.split("\n", -1);
                for (int i = 0; i < lines.length; i++) {
                    String line = lines[i];
                    if (line.contains("scalar-ok:") || line.strip().startsWith("*") || line.strip().startsWith("//")) {
                        continue;
                    }
                    Matcher m = CALL.matcher(line);
                    while (m.find()) {
                        String arg = m.group(2).strip();
                        if (isNumeric(arg, text)) {
                            violations.add(src.relativize(f) + ":" + (i + 1) + ": " + line.strip());
                        }
                    }
                }
            }
        }
        assertTrue(violations.isEmpty(), "number overloads on tensors (use Scalars, or mark '// scalar-ok: why'):\n"
                + String.join("\n", violations));
    }

    /** A literal, a cast to a number, or a name declared as a primitive number in the same file. */
    static boolean isNumeric(String arg, String fileText) {
        if (NUMBER.matcher(arg).matches() || CAST.matcher(arg).matches()) {
            return true;
        }
        if (arg.matches("[A-Za-z_][A-Za-z0-9_]*")) {
            return Pattern.compile("\\b(float|double|int|long)\\s+" + Pattern.quote(arg) + "\\b").matcher(fileText).find();
        }
        return false;
    }

    @Test
    void theRuleSeesWhatItMustSee() {
        String file = "float scale = 2; int count = 3; NDArray w;";
        assertTrue(isNumeric("0.5f", file) && isNumeric("1e-6", file) && isNumeric("(float) x", file));
        assertTrue(isNumeric("scale", file) && isNumeric("count", file));
        assertTrue(!isNumeric("w", file) && !isNumeric("mask", file) && !isNumeric("Scalars.of(x, 2)", file));
    }
}
