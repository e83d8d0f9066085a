package dev.morastream.ops.cli;

import com.fasterxml.jackson.databind.JsonNode;
import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.awt.Graphics2D;
import java.awt.RenderingHints;
import java.awt.image.BufferedImage;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import javax.imageio.ImageIO;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** Line plot (PNG) of one field against another (step by default) from {@code bench ... --json} output. */
@Command(name = "plot", mixinStandardHelpOptions = true,
        description = {"Plot char_acc (or another --field) against step (or another --x) from bench JSON lines (memorize, pretrain,",
            "continual), one line per run, as a PNG."})
public final class PlotCommand implements Callable<Integer> {
    @Parameters(paramLabel = "JSONL", description = "Files of bench memorize --json output.")
    List<Path> inputs;

    @Option(names = "--out", required = true, description = "PNG file to write.")
    Path out;

    @Option(names = "--field", defaultValue = "char_acc", description = "Y field (default ${DEFAULT-VALUE}).")
    String field;

    @Option(names = "--x", defaultValue = "step", description = "X field (default ${DEFAULT-VALUE}).")
    String xField;

    @Option(names = "--label", defaultValue = "fields",
            description = "Name of a run in the legend: fields (method, variant, rank, lr, replay, kl_weight) or file (default ${DEFAULT-VALUE}).")
    String label;

    @Option(names = "--title", defaultValue = "UUID memorisation on the tiny base model", description = "Title.")
    String title;

    private static final Color[] COLORS = {new Color(0x1f77b4), new Color(0xd62728), new Color(0x2ca02c), new Color(0xff7f0e),
        new Color(0x9467bd), new Color(0x8c564b), new Color(0xe377c2), new Color(0x17becf), new Color(0x000000), new Color(0xbcbd22),
        new Color(0x7f7f7f), new Color(0x00a087)};

    @Override
    public Integer call() throws Exception {
        Map<String, List<double[]>> series = new LinkedHashMap<>();
        double minX = 0;
        double maxX = 0;
        double minY = 0;
        double maxY = 1;
        boolean unit = true;
        List<Double> ys = new ArrayList<>();
        for (Path p : inputs) {
            for (String line : Files.readAllLines(p, StandardCharsets.UTF_8)) {
                if (!line.startsWith("{")) {
                    continue;
                }
                JsonNode n = Json.MAPPER.readTree(line);
                String key = label.equals("file") ? p.getFileName().toString().replaceFirst("\\.jsonl?$", "")
                        : n.path("method").asText() + (n.path("variant").asText().isEmpty() ? "" : " " + n.path("variant").asText())
                        + ("full".equals(n.path("method").asText()) ? "" : " r=" + n.path("rank").asInt())
                        + (n.has("lr") ? " lr=" + n.path("lr").asDouble() : "")
                        + (n.has("replay") ? " replay=" + n.path("replay").asDouble() : "")
                        + (n.has("kl_weight") ? " kl=" + n.path("kl_weight").asDouble() : "");
                double x = n.path(xField).asDouble(Double.NaN);
                double y = n.path(field).asDouble(Double.NaN);
                if (!Double.isFinite(x) || !Double.isFinite(y)) {
                    continue;
                }
                series.computeIfAbsent(key, k -> new ArrayList<>()).add(new double[] {x, y});
                minX = Math.min(minX, x);
                maxX = Math.max(maxX, x);
                ys.add(y);
                unit &= y >= 0 && y <= 1;
            }
        }
        if (series.isEmpty()) {
            throw new CommandLine.ParameterException(new CommandLine(this), "no JSON line with numbers in '" + xField + "' and '"
                    + field + "' in " + inputs);
        }
        if (!unit) {
            minY = ys.stream().mapToDouble(Double::doubleValue).min().orElse(0);
            maxY = ys.stream().mapToDouble(Double::doubleValue).max().orElse(1);
            double pad = Math.max(1e-9, (maxY - minY) * 0.05);
            minY -= pad;
            maxY += pad;
        }
        if (maxX <= minX) {
            maxX = minX + 1;
        }
        int w = 1000;
        int h = 560;
        int left = 70;
        int right = 400;
        int top = 50;
        int bottom = 60;
        BufferedImage img = new BufferedImage(w, h, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = img.createGraphics();
        g.setRenderingHint(RenderingHints.KEY_ANTIALIASING, RenderingHints.VALUE_ANTIALIAS_ON);
        g.setColor(Color.WHITE);
        g.fillRect(0, 0, w, h);
        int pw = w - left - right;
        int ph = h - top - bottom;
        g.setColor(new Color(0xdddddd));
        for (int i = 0; i <= 10; i++) {
            int y = top + ph - ph * i / 10;
            g.drawLine(left, y, left + pw, y);
        }
        g.setColor(Color.BLACK);
        g.drawRect(left, top, pw, ph);
        g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 12));
        for (int i = 0; i <= 10; i += 2) {
            int y = top + ph - ph * i / 10;
            g.drawString(String.format(java.util.Locale.ROOT, unit ? "%.1f" : "%.2f", minY + (maxY - minY) * i / 10.0), left - 40, y + 4);
        }
        for (int i = 0; i <= 5; i++) {
            int x = left + pw * i / 5;
            double v = minX + (maxX - minX) * i / 5;
            g.drawString(maxX - minX >= 10 ? String.valueOf(Math.round(v)) : String.format(java.util.Locale.ROOT, "%.2f", v), x - 10,
                    top + ph + 18);
        }
        g.drawString(xField, left + pw / 2 - 10, h - 20);
        g.drawString(field, 10, top - 10);
        g.setFont(new Font(Font.SANS_SERIF, Font.BOLD, 14));
        g.drawString(title, left, 30);
        g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 12));
        int i = 0;
        for (Map.Entry<String, List<double[]>> e : series.entrySet()) {
            Color c = COLORS[i % COLORS.length];
            g.setColor(c);
            g.setStroke(new BasicStroke(2f, BasicStroke.CAP_ROUND, BasicStroke.JOIN_ROUND,
                    1f, e.getKey().startsWith("lora") ? new float[] {6f, 4f} : null, 0f));
            int px = -1;
            int py = -1;
            for (double[] pt : e.getValue()) {
                int x = left + (int) Math.round(pw * (pt[0] - minX) / (maxX - minX));
                int y = top + ph - (int) Math.round(ph * Math.max(0, Math.min(1, (pt[1] - minY) / (maxY - minY))));
                if (px >= 0) {
                    g.drawLine(px, py, x, y);
                }
                g.fillOval(x - 3, y - 3, 6, 6);
                px = x;
                py = y;
            }
            g.drawLine(left + pw + 15, top + 10 + i * 20, left + pw + 40, top + 10 + i * 20);
            g.setColor(Color.BLACK);
            g.drawString(e.getKey(), left + pw + 45, top + 14 + i * 20);
            i++;
        }
        g.dispose();
        Files.createDirectories(out.toAbsolutePath().getParent());
        ImageIO.write(img, "png", out.toFile());
        System.err.println("wrote " + out + " (" + series.size() + " runs)");
        return 0;
    }
}
