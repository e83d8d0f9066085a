package dev.morastream.ops.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

/** {@code mora --version} prints the project's version from the build, not a placeholder. */
class VersionTest {
    @Test
    void versionIsTheProjectVersionOfThePom() throws Exception {
        String pom = Files.readString(Path.of("..", "pom.xml"));
        // the project version: the <version> right after the parent pom's own artifactId
        Matcher m = Pattern.compile("<artifactId>morastream-parent</artifactId>\\s*<version>([^<]+)</version>").matcher(pom);
        assertTrue(m.find(), "no project version in pom.xml");
        String expected = m.group(1);
        CommandLine cl = MoraCli.commandLine();
        StringWriter out = new StringWriter();
        cl.setOut(new PrintWriter(out));
        assertEquals(0, cl.execute("--version"));
        assertEquals("morastream " + expected, out.toString().strip());
        assertEquals(expected, MoraCli.version());
    }
}
