from dpo_doctor.cli import main

main()
