# text2c.awk - a text file as one C string: awk -v name=NAME -f text2c.awk FILE > FILE.c
# Backslashes and double quotes are escaped; each line keeps its newline.
BEGIN { printf "/* generated from a text file by scripts/lib/text2c.awk: do not edit */\n"
        printf "const char %s[] =\n", name }
{ gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); printf "    \"%s\\n\"\n", $0 }
END { printf "    \"\";\n" }
